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
	check := fs.Bool("check", false, "change nothing: compare each projection's tables with a rebuild from position 0, and fail if they differ")
	setUsage(fs, "vigil rebuild [--quiet] [--check] [NAME]", "Rebuilds the projections from position 0: NAME is reporting or subjects; default: all.\n"+
		"With --check it changes nothing: it brings each projection to the log's head, compares its tables\n"+
		"row by row with a rebuild at that position, and exits 1 naming the tables that differ.")
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
	differ := false
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
		if *check {
			diff, n, err := runner.Check(ctx, p, progress)
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			if len(diff) == 0 {
				fmt.Fprintf(stdout, "%s: equal to a rebuild over %d events\n", p.Name(), n)
				continue
			}
			for _, d := range diff {
				fmt.Fprintf(stdout, "%s: table %s differs from a rebuild over %d events (live %d rows, rebuilt %d)\n", p.Name(), d.Table, n, d.Live, d.Rebuilt)
			}
			differ = true
			continue
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
	if differ {
		return exitError{code: 1, msg: "the projections differ from a rebuild: run vigil rebuild to replace them"}
	}
	return nil
}
