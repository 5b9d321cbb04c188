package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil/adapters/postgres"
	httpapi "github.com/vigilhq/vigil/api/http"
)

// Config is everything the subcommands read from flags and VIGIL_*
// variables. A flag wins over its variable; the variable wins over the
// default.
type Config struct {
	Env                string
	DatabaseURL        string
	HTTPAddr           string
	DataDir            string
	MasterKey          string
	MasterKeyFile      string
	MasterKeyPrevious  string
	SigningKeyFile     string
	LogOrigin          string
	Region             string
	TrustedProxies     string
	PublicURL          string
	SchedulerInterval  time.Duration
	ProjectionLinger   time.Duration
	PprofAddr          string
	S3Endpoint         string
	S3AccessKey        string
	S3SecretKey        string
	S3Bucket           string
	S3Region           string
	S3TLS              string
	RecordingMaxSize   string
	RecordingPrefix    string
	RecordingTenantMax string
	RecordingTenantPre string
	WebhookAllowCIDRs  string
	WebhookRetention   time.Duration
	WebhookTimeout     time.Duration
	WebhookWorkers     string
	WebhookRate        string
	Bus                string
	BusTopic           string
	BusPrefix          string
	LogLevel           string
	LogStore           string
	HTTPTLSCertFile    string
	ReportsDatabaseURL string
	HTTPTLSKeyFile     string
	MetricsToken       string
	KurrentDBURL       string
	CheckpointInterval time.Duration
	// CheckpointDurability: local, replica or archive (docs/operations.md,
	// "High availability").
	CheckpointDurability string
	ShutdownTimeout      time.Duration
	// The HTTP server's defences against slow and unauthenticated
	// clients (httpLimits).
	HTTPReadHeaderTimeout time.Duration
	HTTPReadTimeout       time.Duration
	HTTPWriteTimeout      time.Duration
	HTTPIdleTimeout       time.Duration
	HTTPMaxUnauth         string
	RecordingMinRate      string
	RecordingRateWindow   time.Duration
}

// Production reports whether VIGIL_ENV is production.
func (c Config) Production() bool { return c.Env == "production" }

// setting describes one configuration entry, for flags, environment and the
// README's table alike.
type setting struct {
	flag, env, def, help string
	str                  *string
	dur                  *time.Duration
	secret               bool
}

func (c *Config) settings() []setting {
	return []setting{
		{flag: "env", env: "VIGIL_ENV", def: "development", help: "development or production; production never generates keys", str: &c.Env},
		{flag: "database-url", env: "VIGIL_DATABASE_URL", def: "postgres://postgres@127.0.0.1:5432/vigil?sslmode=disable", help: "PostgreSQL URL; the database is created if missing", str: &c.DatabaseURL, secret: true},
		{flag: "reports-database-url", env: "VIGIL_REPORTS_DATABASE_URL", def: "", help: "PostgreSQL URL of a read replica that GraphQL and the CSV reports read from (empty: the main database)", str: &c.ReportsDatabaseURL, secret: true},
		{flag: "http-addr", env: "VIGIL_HTTP_ADDR", def: "127.0.0.1:8080", help: "address the HTTP API listens on", str: &c.HTTPAddr},
		{flag: "http-read-header-timeout", env: "VIGIL_HTTP_READ_HEADER_TIMEOUT", def: "10s", help: "longest time a client may take to send a request's headers", dur: &c.HTTPReadHeaderTimeout},
		{flag: "http-read-timeout", env: "VIGIL_HTTP_READ_TIMEOUT", def: "30s", help: "longest time a client may take to send a whole request, body included (recording uploads: see VIGIL_RECORDING_MIN_RATE)", dur: &c.HTTPReadTimeout},
		{flag: "http-write-timeout", env: "VIGIL_HTTP_WRITE_TIMEOUT", def: "30s", help: "longest one write of a response may wait for the client to take data (long downloads that keep moving are not cut)", dur: &c.HTTPWriteTimeout},
		{flag: "http-idle-timeout", env: "VIGIL_HTTP_IDLE_TIMEOUT", def: "2m", help: "how long a kept-alive connection may wait for its next request", dur: &c.HTTPIdleTimeout},
		{flag: "http-max-unauthenticated", env: "VIGIL_HTTP_MAX_UNAUTHENTICATED", def: "32", help: "requests in progress without an accepted credential yet (logins included); more are answered 503 with Retry-After; 0: no cap", str: &c.HTTPMaxUnauth},
		{flag: "recording-min-rate", env: "VIGIL_RECORDING_MIN_RATE", def: "16KiB", help: "slowest a recording upload may arrive, in bytes per second (or with KiB, MiB) averaged over VIGIL_RECORDING_RATE_WINDOW", str: &c.RecordingMinRate},
		{flag: "recording-rate-window", env: "VIGIL_RECORDING_RATE_WINDOW", def: "30s", help: "the window VIGIL_RECORDING_MIN_RATE is averaged over", dur: &c.RecordingRateWindow},
		{flag: "http-tls-cert-file", env: "VIGIL_HTTP_TLS_CERT_FILE", def: "", help: "serve HTTPS with this PEM certificate (full chain; reloaded when it changes) and VIGIL_HTTP_TLS_KEY_FILE; empty: plain HTTP, for a TLS-terminating proxy", str: &c.HTTPTLSCertFile},
		{flag: "http-tls-key-file", env: "VIGIL_HTTP_TLS_KEY_FILE", def: "", help: "the PEM private key of VIGIL_HTTP_TLS_CERT_FILE", str: &c.HTTPTLSKeyFile},
		{flag: "data-dir", env: "VIGIL_DATA_DIR", def: "./var", help: "directory for generated keys and local data", str: &c.DataDir},
		{flag: "master-key", env: "VIGIL_MASTER_KEY", def: "", help: "master key, 32 bytes in base64 (prefer the file)", str: &c.MasterKey, secret: true},
		{flag: "master-key-file", env: "VIGIL_MASTER_KEY_FILE", def: "", help: "file holding the base64 master key", str: &c.MasterKeyFile},
		{flag: "master-key-previous", env: "VIGIL_MASTER_KEY_PREVIOUS", def: "", help: "comma-separated older master keys still accepted while a rotation completes", str: &c.MasterKeyPrevious, secret: true},
		{flag: "signing-key-file", env: "VIGIL_SIGNING_KEY_FILE", def: "", help: "file holding the Ed25519 checkpoint signing key (note format); its verifier key is FILE.pub", str: &c.SigningKeyFile},
		{flag: "log-origin", env: "VIGIL_LOG_ORIGIN", def: "vigil.local", help: "checkpoint origin prefix and signer name; each tenant's log is ORIGIN/TENANT", str: &c.LogOrigin},
		{flag: "region", env: "VIGIL_REGION", def: "eu", help: "the region this deployment serves; tenants of other regions are refused", str: &c.Region},
		{flag: "trusted-proxies", env: "VIGIL_TRUSTED_PROXIES", def: "", help: "comma-separated CIDRs of proxies whose X-Forwarded-For is believed", str: &c.TrustedProxies},
		{flag: "public-url", env: "VIGIL_PUBLIC_URL", def: "", help: "the URL browsers and identity providers reach vigil at, such as https://vigil.example.com: SAML entity ids and ACS URLs are built on it (empty: each request's scheme and host)", str: &c.PublicURL},
		{flag: "projection-linger", env: "VIGIL_PROJECTION_LINGER", def: "20ms", help: "how long the projections and the webhook fan-out wait, once woken by an append, before applying what arrived (batches under load; 0: at once)", dur: &c.ProjectionLinger},
		{flag: "scheduler-interval", env: "VIGIL_SCHEDULER_INTERVAL", def: "10s", help: "how often idle sessions are closed and idle consoles logged out", dur: &c.SchedulerInterval},
		{flag: "metrics-token", env: "VIGIL_METRICS_TOKEN", def: "", help: "when set, /metrics answers only requests with the header Authorization: Bearer TOKEN", str: &c.MetricsToken, secret: true},
		{flag: "pprof-addr", env: "VIGIL_PPROF_ADDR", def: "", help: "serve Go's pprof profiles on this loopback address (off when empty)", str: &c.PprofAddr},
		{flag: "s3-endpoint", env: "VIGIL_S3_ENDPOINT", def: "", help: "S3 host:port (no scheme) for recordings and archives; empty keeps them under the data dir", str: &c.S3Endpoint},
		{flag: "s3-access-key", env: "VIGIL_S3_ACCESS_KEY", def: "", help: "S3 access key", str: &c.S3AccessKey},
		{flag: "s3-secret-key", env: "VIGIL_S3_SECRET_KEY", def: "", help: "S3 secret key", str: &c.S3SecretKey, secret: true},
		{flag: "s3-bucket", env: "VIGIL_S3_BUCKET", def: "vigil", help: "S3 bucket, created if missing", str: &c.S3Bucket},
		{flag: "s3-region", env: "VIGIL_S3_REGION", def: "us-east-1", help: "S3 bucket region", str: &c.S3Region},
		{flag: "s3-tls", env: "VIGIL_S3_TLS", def: "true", help: "use HTTPS to reach S3 (true or false)", str: &c.S3TLS},
		{flag: "recording-max-size", env: "VIGIL_RECORDING_MAX_SIZE", def: "4GiB", help: "largest recording accepted (bytes, or with KiB, MiB, GiB)", str: &c.RecordingMaxSize},
		{flag: "recording-prefix", env: "VIGIL_RECORDING_PREFIX", def: "recordings", help: "object key prefix of recordings", str: &c.RecordingPrefix},
		{flag: "recording-tenant-max-size", env: "VIGIL_RECORDING_TENANT_MAX_SIZE", def: "", help: "per-tenant maximum recording sizes, as TENANT=SIZE,… (overrides VIGIL_RECORDING_MAX_SIZE)", str: &c.RecordingTenantMax},
		{flag: "recording-tenant-prefix", env: "VIGIL_RECORDING_TENANT_PREFIX", def: "", help: "per-tenant recording key prefixes, as TENANT=PREFIX,… (overrides VIGIL_RECORDING_PREFIX)", str: &c.RecordingTenantPre},
		{flag: "webhook-allow-cidrs", env: "VIGIL_WEBHOOK_ALLOW_CIDRS", def: "", help: "CIDRs or addresses webhooks may reach although private, loopback or link-local, and over plain HTTP", str: &c.WebhookAllowCIDRs},
		{flag: "webhook-payload-retention", env: "VIGIL_WEBHOOK_PAYLOAD_RETENTION", def: "720h", help: "how long stored payloads of finished deliveries are kept", dur: &c.WebhookRetention},
		{flag: "webhook-timeout", env: "VIGIL_WEBHOOK_TIMEOUT", def: "10s", help: "time limit of one delivery attempt", dur: &c.WebhookTimeout},
		{flag: "webhook-workers", env: "VIGIL_WEBHOOK_WORKERS", def: "64", help: "concurrent webhook deliveries", str: &c.WebhookWorkers},
		{flag: "webhook-rate", env: "VIGIL_WEBHOOK_RATE", def: "50", help: "webhook requests per second per endpoint", str: &c.WebhookRate},
		{flag: "bus", env: "VIGIL_BUS", def: "postgres", help: "event bus: postgres (the main database, through watermill-sql) or nats://host:port (NATS JetStream)", str: &c.Bus},
		{flag: "bus-prefix", env: "VIGIL_BUS_PREFIX", def: "vigil", help: "deployment prefix of the bus's names (relay topic, durable consumer, default events topic), so deployments can share a NATS server: letters, digits, '-', '_'", str: &c.BusPrefix},
		{flag: "bus-topic", env: "VIGIL_BUS_TOPIC", def: "", help: "topic committed events are published on (default <prefix>.events, so vigil.events)", str: &c.BusTopic},
		{flag: "log-store", env: "VIGIL_LOG_STORE", def: "postgres", help: "where the ledger's log lives: postgres (the main database) or kurrentdb (VIGIL_KURRENTDB_URL); keys, projections and the rest stay in PostgreSQL", str: &c.LogStore},
		{flag: "kurrentdb-url", env: "VIGIL_KURRENTDB_URL", def: "", help: "KurrentDB/EventStoreDB connection string, such as esdb://127.0.0.1:2113?tls=false, for VIGIL_LOG_STORE=kurrentdb", str: &c.KurrentDBURL, secret: true},
		{flag: "log-level", env: "VIGIL_LOG_LEVEL", def: "info", help: "debug, info, warn or error", str: &c.LogLevel},
		{flag: "checkpoint-interval", env: "VIGIL_CHECKPOINT_INTERVAL", def: "5s", help: "how often a grown log gets a signed checkpoint", dur: &c.CheckpointInterval},
		{flag: "checkpoint-durability", env: "VIGIL_CHECKPOINT_DURABILITY", def: "local", help: "what must hold an event before a checkpoint covers it: local (the primary), replica (every synchronous standby) or archive (the WAL archive)", str: &c.CheckpointDurability},
		{flag: "shutdown-timeout", env: "VIGIL_SHUTDOWN_TIMEOUT", def: "30s", help: "how long SIGTERM waits for in-flight requests", dur: &c.ShutdownTimeout},
	}
}

// bindConfig registers the configuration flags on fs, with defaults taken
// from getenv, and returns the Config they fill once fs is parsed. Call
// (*Config).validate after parsing.
func bindConfig(fs *flag.FlagSet, getenv func(string) string, without ...string) *Config {
	c := &Config{}
settings:
	for _, s := range c.settings() {
		def := s.def
		if v := getenv(s.env); v != "" {
			def = v
		}
		for _, w := range without {
			if w == s.flag {
				// The command uses this flag name for something else; the
				// setting still comes from its variable.
				if s.str != nil {
					*s.str = def
				} else if d, err := time.ParseDuration(def); err == nil {
					*s.dur = d
				}
				continue settings
			}
		}
		help := s.help + " (" + s.env + ")"
		if s.str != nil {
			if s.secret {
				// Never print a secret as a flag default in -help.
				*s.str = def
				fs.Func(s.flag, help, func(v string) error { *s.str = v; return nil })
				continue
			}
			fs.StringVar(s.str, s.flag, def, help)
			continue
		}
		d, err := time.ParseDuration(def)
		if err != nil {
			d, _ = time.ParseDuration(s.def)
			fmt.Fprintf(os.Stderr, "vigil: %s=%q is not a duration; using %s\n", s.env, def, s.def)
		}
		fs.DurationVar(s.dur, s.flag, d, help)
	}
	return c
}

func (c *Config) validate() error {
	switch c.Env {
	case "development", "production", "test":
	default:
		return fmt.Errorf("VIGIL_ENV=%q: want development or production", c.Env)
	}
	if c.DatabaseURL == "" {
		return fmt.Errorf("VIGIL_DATABASE_URL is empty")
	}
	if c.ProjectionLinger < 0 || c.ProjectionLinger > 10*time.Second {
		return fmt.Errorf("VIGIL_PROJECTION_LINGER=%s: want 0 to 10s", c.ProjectionLinger)
	}
	if c.CheckpointInterval <= 0 || c.ShutdownTimeout <= 0 || c.SchedulerInterval <= 0 {
		return fmt.Errorf("checkpoint interval, scheduler interval and shutdown timeout must be positive")
	}
	if _, err := publicURL(c.PublicURL); err != nil {
		return err
	}
	if _, err := c.proxies(); err != nil {
		return err
	}
	if c.Region == "" {
		return fmt.Errorf("VIGIL_REGION is empty")
	}
	if _, err := c.recordings(); err != nil {
		return err
	}
	if _, err := c.webhooks(); err != nil {
		return err
	}
	if _, err := c.httpLimits(); err != nil {
		return err
	}
	if strings.ContainsAny(c.LogOrigin, " \t\n+") || c.LogOrigin == "" {
		return fmt.Errorf("VIGIL_LOG_ORIGIN=%q: want a name without spaces or '+'", c.LogOrigin)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	if (c.HTTPTLSCertFile == "") != (c.HTTPTLSKeyFile == "") {
		return fmt.Errorf("VIGIL_HTTP_TLS_CERT_FILE and VIGIL_HTTP_TLS_KEY_FILE go together: set both or neither")
	}
	if _, err := postgres.NewDurability(nil, c.CheckpointDurability); err != nil {
		return fmt.Errorf("VIGIL_CHECKPOINT_DURABILITY: %w", err)
	}
	switch c.LogStore {
	case "postgres":
	case "kurrentdb":
		if c.CheckpointDurability != postgres.DurableLocal && c.CheckpointDurability != "" {
			return fmt.Errorf("VIGIL_CHECKPOINT_DURABILITY=%s needs VIGIL_LOG_STORE=postgres", c.CheckpointDurability)
		}
		if c.KurrentDBURL == "" {
			return fmt.Errorf("VIGIL_LOG_STORE=kurrentdb needs VIGIL_KURRENTDB_URL")
		}
	default:
		return fmt.Errorf("VIGIL_LOG_STORE=%q: want postgres or kurrentdb", c.LogStore)
	}
	return nil
}

// proxies parses VIGIL_TRUSTED_PROXIES.
func (c *Config) proxies() ([]netip.Prefix, error) {
	p, err := parsePrefixes(c.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("VIGIL_TRUSTED_PROXIES: %w", err)
	}
	return p, nil
}

// parsePrefixes parses comma-separated CIDRs or single addresses.
func parsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR or an address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (c *Config) previousKeys() []string {
	if c.MasterKeyPrevious == "" {
		return nil
	}
	return strings.Split(c.MasterKeyPrevious, ",")
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("VIGIL_LOG_LEVEL=%q: want debug, info, warn or error", s)
	}
	return l, nil
}

// recordings returns the recording and blob store settings.
func (c *Config) recordings() (recordingsConfig, error) {
	tls, err := strconv.ParseBool(c.S3TLS)
	if err != nil {
		return recordingsConfig{}, fmt.Errorf("VIGIL_S3_TLS=%q: want true or false", c.S3TLS)
	}
	size, err := parseSize(c.RecordingMaxSize)
	if err != nil {
		return recordingsConfig{}, fmt.Errorf("VIGIL_RECORDING_MAX_SIZE: %w", err)
	}
	tenantMax := map[string]int64{}
	for tenant, v := range pairs(c.RecordingTenantMax) {
		n, err := parseSize(v)
		if err != nil {
			return recordingsConfig{}, fmt.Errorf("VIGIL_RECORDING_TENANT_MAX_SIZE: tenant %s: %w", tenant, err)
		}
		tenantMax[tenant] = n
	}
	tenantPrefix := pairs(c.RecordingTenantPre)
	for tenant, p := range tenantPrefix {
		if p == "" || strings.ContainsAny(p, " \\") || strings.HasPrefix(p, "/") {
			return recordingsConfig{}, fmt.Errorf("VIGIL_RECORDING_TENANT_PREFIX: tenant %s: %q is not a key prefix", tenant, p)
		}
	}
	return recordingsConfig{
		DataDir: c.DataDir, S3Endpoint: c.S3Endpoint, S3AccessKey: c.S3AccessKey, S3SecretKey: c.S3SecretKey,
		S3Bucket: c.S3Bucket, S3Region: c.S3Region, S3TLS: tls, MaxSize: size, Prefix: c.RecordingPrefix,
		TenantMaxSize: tenantMax, TenantPrefix: tenantPrefix,
	}, nil
}

// pairs parses "KEY=VALUE,KEY=VALUE"; entries without '=' are ignored by
// the callers' validation of the values.
func pairs(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && k != "" {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// parseSize reads a byte count with an optional KiB, MiB or GiB suffix.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive size", s)
	}
	return n * mult, nil
}

// webhooks returns the webhook settings.
func (c *Config) webhooks() (WebhookSettings, error) {
	allow, err := parsePrefixes(c.WebhookAllowCIDRs)
	if err != nil {
		return WebhookSettings{}, fmt.Errorf("VIGIL_WEBHOOK_ALLOW_CIDRS: %w", err)
	}
	workers, err := strconv.Atoi(c.WebhookWorkers)
	if err != nil || workers < 1 {
		return WebhookSettings{}, fmt.Errorf("VIGIL_WEBHOOK_WORKERS=%q: want a positive number", c.WebhookWorkers)
	}
	rate, err := strconv.ParseFloat(c.WebhookRate, 64)
	if err != nil || rate <= 0 {
		return WebhookSettings{}, fmt.Errorf("VIGIL_WEBHOOK_RATE=%q: want a positive number", c.WebhookRate)
	}
	if c.WebhookRetention <= 0 || c.WebhookTimeout <= 0 {
		return WebhookSettings{}, fmt.Errorf("webhook payload retention and timeout must be positive")
	}
	return WebhookSettings{AllowCIDRs: allow, PayloadRetention: c.WebhookRetention, Timeout: c.WebhookTimeout,
		Workers: workers, Rate: rate, Topic: c.busTopic(), Linger: c.ProjectionLinger}, nil
}

// httpLimits returns the API's defences against slow and unauthenticated
// clients; the timeouts that belong to the http.Server are read from c
// directly by serve.
func (c *Config) httpLimits() (httpapi.Limits, error) {
	for _, d := range []struct {
		env string
		v   time.Duration
	}{
		{"VIGIL_HTTP_READ_HEADER_TIMEOUT", c.HTTPReadHeaderTimeout}, {"VIGIL_HTTP_READ_TIMEOUT", c.HTTPReadTimeout},
		{"VIGIL_HTTP_WRITE_TIMEOUT", c.HTTPWriteTimeout}, {"VIGIL_HTTP_IDLE_TIMEOUT", c.HTTPIdleTimeout},
		{"VIGIL_RECORDING_RATE_WINDOW", c.RecordingRateWindow},
	} {
		if d.v <= 0 {
			return httpapi.Limits{}, fmt.Errorf("%s=%s: want a positive duration", d.env, d.v)
		}
	}
	maxUnauth, err := strconv.Atoi(c.HTTPMaxUnauth)
	if err != nil || maxUnauth < 0 {
		return httpapi.Limits{}, fmt.Errorf("VIGIL_HTTP_MAX_UNAUTHENTICATED=%q: want a number, 0 for no cap", c.HTTPMaxUnauth)
	}
	rate, err := parseSize(c.RecordingMinRate)
	if err != nil {
		return httpapi.Limits{}, fmt.Errorf("VIGIL_RECORDING_MIN_RATE: %w", err)
	}
	return httpapi.Limits{MaxUnauthenticated: maxUnauth, WriteTimeout: c.HTTPWriteTimeout,
		RecordingMinRate: rate, RecordingRateWindow: c.RecordingRateWindow}, nil
}
