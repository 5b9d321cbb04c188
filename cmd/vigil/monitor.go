package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/tlog"
)

// runMonitor is what a transparency-log monitor does, for one tenant's log
// on a running Vigil: fetch the latest signed checkpoint, check its
// signature, and prove from the hash tiles alone that it extends the
// checkpoint seen last time (kept in a state file), so that a rewritten or
// forked log is noticed. It trusts nothing the server computes: only the
// signed checkpoints and the hashes it combines itself.
func runMonitor(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("monitor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "base URL of the Vigil API, such as https://vigil.example.com (required)")
	apiKey := fs.String("api-key", env("VIGIL_MONITOR_API_KEY"), "an auditor API key of the tenant (or VIGIL_MONITOR_API_KEY)")
	keyArg := fs.String("key", "", "checkpoint verifier keys, comma-separated, each a key or a file of keys (required)")
	state := fs.String("state", "", "file keeping the last checkpoint seen; created on the first run (required)")
	timeout := fs.Duration("timeout", time.Minute, "time limit of the whole check")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *url == "" || *apiKey == "" || *keyArg == "" || *state == "" {
		fmt.Fprintln(stderr, "vigil monitor: --url, --api-key (or VIGIL_MONITOR_API_KEY), --key and --state are required")
		return errUsage
	}
	verifiers, _, err := parseVerifiers(*keyArg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := &tlogClient{ctx: ctx, base: strings.TrimRight(*url, "/"), key: *apiKey}

	msg, err := c.get("/v1/tlog/checkpoint")
	if err != nil {
		return err
	}
	cur, err := ledger.OpenCheckpoint(msg, verifiers)
	if err != nil {
		return exitError{code: 1, msg: fmt.Sprintf("the latest checkpoint does not verify: %v", err)}
	}
	hr := tlog.TileHashReader(tlog.Tree{N: cur.Size, Hash: cur.Root}, c)

	prevMsg, err := os.ReadFile(*state)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// The first run: the checkpoint must at least match the tiles.
		root, err := tlog.TreeHash(cur.Size, hr)
		if err != nil {
			return exitError{code: 1, msg: fmt.Sprintf("the tiles do not give the checkpoint's tree: %v", err)}
		}
		if root != cur.Root {
			return exitError{code: 1, msg: "the tiles do not give the checkpoint's root"}
		}
		fmt.Fprintf(stdout, "OK: %s at %d leaves, signed; first checkpoint kept in %s\n", cur.Origin, cur.Size, *state)
	case err != nil:
		return err
	default:
		prev, err := ledger.OpenCheckpoint(prevMsg, verifiers)
		if err != nil {
			return fmt.Errorf("the checkpoint in %s does not verify: %w", *state, err)
		}
		if prev.Origin != cur.Origin {
			return exitError{code: 1, msg: fmt.Sprintf("the log changed origin: %s before, %s now", prev.Origin, cur.Origin)}
		}
		if cur.Size < prev.Size {
			return exitError{code: 1, msg: fmt.Sprintf("the log shrank: %d leaves before, %d now (a rewrite or a restore from backup)", prev.Size, cur.Size)}
		}
		proof, err := tlog.ProveTree(cur.Size, prev.Size, hr)
		if err != nil {
			return exitError{code: 1, msg: fmt.Sprintf("no consistency proof from the tiles: %v", err)}
		}
		if err := tlog.CheckTree(proof, cur.Size, cur.Root, prev.Size, prev.Root); err != nil {
			return exitError{code: 1, msg: fmt.Sprintf("FORK: the log at %d leaves does not extend the one at %d seen before: %v", cur.Size, prev.Size, err)}
		}
		fmt.Fprintf(stdout, "OK: %s grew from %d to %d leaves; consistent with the checkpoint seen before\n", cur.Origin, prev.Size, cur.Size)
	}
	// Keep the newest checkpoint, atomically.
	tmp := *state + ".new"
	if err := os.WriteFile(tmp, msg, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, *state)
}

// tlogClient reads the tlog-tiles endpoints; it is a tlog.TileReader.
type tlogClient struct {
	ctx  context.Context
	base string
	key  string
}

func (c *tlogClient) get(path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s %s", path, res.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

func (c *tlogClient) Height() int { return 8 }

func (c *tlogClient) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := c.get("/v1/tlog/tile/" + strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", t.H)))
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (c *tlogClient) SaveTiles([]tlog.Tile, [][]byte) {}
