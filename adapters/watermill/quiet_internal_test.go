package watermill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	wm "github.com/ThreeDotsLabs/watermill"
)

// TestQuietOnCancel: watermill's errors for a cancelled context (serve
// stopping) are logged at debug level, with the error; every other error
// stays an error, through With too.
func TestQuietOnCancel(t *testing.T) {
	var out bytes.Buffer
	l := quietOnCancel{wm.NewSlogLogger(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})))}
	l.With(wm.LogFields{"topic": "t"}).Error("could not commit tx for querying message", fmt.Errorf("poll: %w", context.Canceled), nil)
	l.Error("could not query", errors.New("connection refused"), nil)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("logged %q", out.String())
	}
	if !strings.Contains(lines[0], "level=DEBUG") || !strings.Contains(lines[0], "context canceled") || !strings.Contains(lines[0], "topic=t") {
		t.Errorf("cancelled: %s", lines[0])
	}
	if !strings.Contains(lines[1], "level=ERROR") || !strings.Contains(lines[1], "connection refused") {
		t.Errorf("other error: %s", lines[1])
	}
}
