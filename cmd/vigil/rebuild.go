package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/vigilhq/vigil/projections"
)

func runRebuild(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := bindConfig(fs, env)
	quiet := fs.Bool("quiet", false, "no progress bar")
	setUsage(fs, "vigil rebuild [--quiet] [NAME]", "Rebuilds the projections from position 0: NAME is reporting or subjects; default: all.")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitError{code: 0}
		}
		return errUsage
	}
	if fs.NArg() > 1 {
		return errUsage
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	sys, err := open(ctx, cfg, newLogger(stderr, cfg.LogLevel), true)
	if err != nil {
		return err
	}
	defer sys.Close()
	runner := sys.projector(0)
	todo := runner.Projections()
	if fs.NArg() == 1 {
		p, ok := runner.Find(fs.Arg(0))
		if !ok {
			return fmt.Errorf("no projection %q: want reporting or subjects", fs.Arg(0))
		}
		todo = []projections.Projection{p}
	}
	for _, p := range todo {
		start := time.Now()
		var bar *progressbar.ProgressBar
		progress := func(done, total int64) {
			if *quiet {
				return
			}
			if bar == nil {
				bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("rebuild "+p.Name()),
					progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"),
					progressbar.OptionThrottle(250*time.Millisecond), progressbar.OptionClearOnFinish())
			}
			_ = bar.Set64(done)
		}
		n, err := runner.Rebuild(ctx, p, progress)
		if bar != nil {
			_ = bar.Finish()
		}
		if err != nil {
			return err
		}
		d := time.Since(start)
		fmt.Fprintf(stdout, "rebuilt %s: %d events in %s (%.0f events/s)\n", p.Name(), n, d.Round(time.Millisecond), float64(n)/d.Seconds())
	}
	return nil
}
