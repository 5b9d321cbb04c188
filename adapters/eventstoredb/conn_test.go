package eventstoredb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/vigilhq/vigil/domain"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// coded stands in for *esdb.Error, whose code cannot be set from outside
// the client package.
type coded struct {
	code esdb.ErrorCode
	err  error
}

func (c coded) Error() string        { return fmt.Sprintf("[%d] %v", c.code, c.err) }
func (c coded) Code() esdb.ErrorCode { return c.code }
func (c coded) Unwrap() error        { return c.err }

func TestTranslate(t *testing.T) {
	grpcUnavailable := status.Error(codes.Unavailable, "connection refused")
	cases := []struct {
		name string
		in   error
		want error // nil: none of the sentinels
	}{
		{"WrongExpectedVersion", coded{esdb.ErrorCodeWrongExpectedVersion, errors.New("expecting 2 but got 4")}, domain.ErrConcurrency},
		{"NotFound", coded{esdb.ErrorCodeResourceNotFound, errors.New("stream 'x' is not found")}, domain.ErrNotFound},
		{"StreamDeleted", coded{esdb.ErrorCodeStreamDeleted, errors.New("stream 'x' is deleted")}, ErrInconsistent},
		{"AccessDenied", coded{esdb.ErrorCodeAccessDenied, nil}, ErrAccessDenied},
		{"Unauthenticated", coded{esdb.ErrorCodeUnauthenticated, nil}, ErrAccessDenied},
		{"Deadline", coded{esdb.ErrorCodeDeadlineExceeded, nil}, ErrUnavailable},
		{"Unavailable", coded{esdb.ErrorUnavailable, grpcUnavailable}, ErrUnavailable},
		{"ConnectionClosed", coded{esdb.ErrorCodeConnectionClosed, nil}, ErrUnavailable},
		{"NotLeader", coded{esdb.ErrorCodeNotLeader, nil}, ErrUnavailable},
		{"Aborted", coded{esdb.ErrorAborted, nil}, ErrUnavailable},
		{"UnknownOverUnavailable", coded{esdb.ErrorCodeUnknown, grpcUnavailable}, ErrUnavailable},
		{"RealClientErrorOverUnavailable", mustClientError(grpcUnavailable), ErrUnavailable},
		{"RawUnavailable", grpcUnavailable, ErrUnavailable},
		{"RawDeadline", status.Error(codes.DeadlineExceeded, "slow"), ErrUnavailable},
		{"RawPermission", status.Error(codes.PermissionDenied, "no $all for you"), ErrAccessDenied},
		{"RawCanceled", status.Error(codes.Canceled, "cancelled"), context.Canceled},
		{"AlreadyOurs", fmt.Errorf("x: %w", ErrInconsistent), ErrInconsistent},
		{"Other", coded{esdb.ErrorCodeInternalServer, errors.New("boom")}, nil},
		{"Plain", errors.New("boom"), nil},
	}
	sentinels := []error{domain.ErrConcurrency, domain.ErrNotFound, ErrInconsistent, ErrAccessDenied, ErrUnavailable, context.Canceled}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := translate(context.Background(), c.in)
			if got == nil {
				t.Fatal("nil")
			}
			for _, s := range sentinels {
				if errors.Is(got, s) != (s == c.want) {
					t.Errorf("%v: errors.Is(%v) = %v", got, s, !(s == c.want))
				}
			}
			var ce esdbCoder
			if errors.As(got, &ce) && c.name != "AlreadyOurs" {
				t.Errorf("%v leaks the client's error type", got)
			}
			if !strings.Contains(got.Error(), strings.TrimPrefix(c.in.Error(), "x: ")) {
				t.Errorf("%q lost the message %q", got, c.in)
			}
		})
	}
	if domain.ErrorCode(translate(context.Background(), coded{esdb.ErrorCodeWrongExpectedVersion, nil})) != domain.CodeConflict {
		t.Error("a version clash is not a conflict at the boundary")
	}
	if translate(context.Background(), nil) != nil {
		t.Error("nil translated")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := translate(ctx, coded{esdb.ErrorCodeUnknown, status.Error(codes.Canceled, "x")}); err != context.Canceled {
		t.Errorf("after the caller cancelled: %v", err)
	}
}

func mustClientError(err error) error {
	e, _ := esdb.FromError(err)
	return e
}

func TestBrokenConn(t *testing.T) {
	for _, c := range []struct {
		err    error
		broken bool
	}{
		{nil, false},
		{coded{esdb.ErrorCodeConnectionClosed, nil}, true},
		{coded{esdb.ErrorUnavailable, nil}, true},
		{mustClientError(status.Error(codes.Unavailable, "x")), true},
		{status.Error(codes.Unavailable, "x"), true},
		{coded{esdb.ErrorCodeWrongExpectedVersion, nil}, false},
		{coded{esdb.ErrorCodeDeadlineExceeded, nil}, false},
		{status.Error(codes.PermissionDenied, "x"), false},
		{errors.New("x"), false},
	} {
		if got := brokenConn(c.err); got != c.broken {
			t.Errorf("brokenConn(%v) = %v", c.err, got)
		}
	}
	if !isWrongVersion(fmt.Errorf("append: %w", coded{esdb.ErrorCodeWrongExpectedVersion, nil})) || isWrongVersion(errors.New("x")) {
		t.Error("isWrongVersion")
	}
}

func TestParseURL(t *testing.T) {
	ok := []struct {
		url      string
		check    func(*esdb.Configuration) bool
		describe string
	}{
		{"esdb://localhost:2113?tls=false", func(c *esdb.Configuration) bool { return c.Address == "localhost:2113" && c.DisableTLS }, "single node, no TLS"},
		{"kurrentdb://admin:changeit@db:2113", func(c *esdb.Configuration) bool {
			return c.Address == "db:2113" && c.Username == "admin" && c.Password == "changeit" && !c.DisableTLS
		}, "kurrentdb scheme with credentials"},
		{"kurrent://db", func(c *esdb.Configuration) bool { return c.Address == "db:2113" }, "kurrent scheme, default port"},
		{"kurrentdb+discover://cluster.example:2113", func(c *esdb.Configuration) bool { return c.DnsDiscover }, "DNS discovery"},
		{"esdb://a:2113,b:2113,c:2113?nodePreference=leader", func(c *esdb.Configuration) bool { return len(c.GossipSeeds) == 3 }, "gossip seeds"},
	}
	for _, c := range ok {
		cfg, err := parseURL(c.url)
		if err != nil {
			t.Errorf("%s: %v", c.describe, err)
			continue
		}
		if !c.check(cfg) {
			t.Errorf("%s: %+v", c.describe, cfg)
		}
	}
	for _, bad := range []string{
		"", "localhost:2113", "http://localhost:2113", "postgres://u:s3cret@db/x",
		"esdb://admin:s3cret@db:2113/path", "esdb://admin:s3cret@db:notaport", "kurrentdb://admin:s3cret@",
	} {
		_, err := parseURL(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: error shows the password: %v", bad, err)
		}
	}
}

func TestRedactAndClientLogs(t *testing.T) {
	if got := redact("dial esdb://admin:p@ss:w0rd@db:2113 failed"); strings.Contains(got, "w0rd") || !strings.Contains(got, "admin:xxxxx@") {
		t.Errorf("redact: %q", got)
	}
	var buf bytes.Buffer
	log := slogLogging(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	log(esdb.LogWarn, "candidate %s failed", "esdb://u:topsecret@db:2113")
	log(esdb.LogError, "unexpected exception: %v", "context canceled")
	out := buf.String()
	if strings.Contains(out, "topsecret") {
		t.Errorf("client log shows a password: %s", out)
	}
	if !strings.Contains(out, "level=INFO") || !strings.Contains(out, "level=DEBUG") {
		t.Errorf("client log levels: %s", out)
	}
}
