package webhooks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
)

// ErrAddressRefused is wrapped by a Sender's error for an address or scheme
// its rules refuse (adapters/webhook's ErrRefused is this error).
var ErrAddressRefused = errors.New("webhook address refused")

// SendErrorCategory is what a subscriber's delivery log shows of a failed
// attempt (last_error): a fixed category, never the error's text, which
// names the internal resolver and the resolved addresses.
func SendErrorCategory(err error) string {
	var dnsErr *net.DNSError
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var alert tls.AlertError
	var recErr tls.RecordHeaderError
	switch {
	case errors.Is(err, ErrAddressRefused):
		return "address refused: the URL's address or scheme is not allowed for webhooks"
	case errors.As(err, &dnsErr):
		return "dns: the host name did not resolve"
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return "timeout: no answer in time"
	case errors.As(err, &certErr) || errors.As(err, &alert) || errors.As(err, &recErr):
		return "tls: the TLS handshake failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection reset before an answer"
	}
	return "connection failed"
}

// Sender posts one webhook request. adapters/webhook implements it with the
// SSRF checks; implementations are safe for concurrent use.
type Sender interface {
	// Send posts body to url with headers and returns the response's status
	// and its Retry-After (0 when absent). An error means no response (a
	// refused address, a timeout, a broken connection).
	Send(ctx context.Context, url string, headers http.Header, body []byte) (status int, retryAfter time.Duration, err error)
}

// DefaultSchedule is the delay before each attempt: immediately, then 5 s,
// 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h after the previous
// failure. After the last attempt a delivery is dead (replayable).
var DefaultSchedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
	5 * time.Hour, 10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour}

// DelivererOptions tune a Deliverer. Zero values select the defaults.
type DelivererOptions struct {
	// Schedule is the retry schedule (default DefaultSchedule).
	Schedule []time.Duration
	// Jitter spreads each delay by up to this fraction either way
	// (default 0.1; negative means none).
	Jitter float64
	// Timeout bounds one attempt (default 10 s).
	Timeout time.Duration
	// Workers is how many requests may run at once (default 64).
	Workers int
	// PerEndpoint is how many requests may run at once to one
	// subscription (default 4): a hanging endpoint holds only these.
	PerEndpoint int
	// Rate is the requests per second allowed to one subscription
	// (default 50), with a burst of the same size.
	Rate float64
	// Poll is how often due deliveries are looked for when nothing wakes
	// the deliverer (default 250 ms).
	Poll time.Duration
	// Lease is how long a claimed delivery stays taken before another
	// worker may try it again (default Timeout + 1 min).
	Lease time.Duration
	// MaxRetryAfter caps an honoured Retry-After (default 24 h).
	MaxRetryAfter time.Duration
}

// Deliverer sends due deliveries. Any number may run, in any number of
// processes: each takes due rows with FOR UPDATE SKIP LOCKED and leases them.
// It is safe for concurrent use.
type Deliverer struct {
	cfg    Config
	sender Sender
	opts   DelivererOptions
	wake   chan struct{}

	mu       sync.Mutex
	inflight map[uuid.UUID]int
	buckets  map[uuid.UUID]*bucket
	sem      chan struct{}
}

// NewDeliverer returns a deliverer sending with sender.
func NewDeliverer(cfg Config, sender Sender, opts DelivererOptions) *Deliverer {
	cfg.defaults()
	if len(opts.Schedule) == 0 {
		opts.Schedule = DefaultSchedule
	}
	if opts.Jitter == 0 {
		opts.Jitter = 0.1
	}
	if opts.Jitter < 0 {
		opts.Jitter = 0
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Workers <= 0 {
		opts.Workers = 64
	}
	if opts.PerEndpoint <= 0 {
		opts.PerEndpoint = 4
	}
	if opts.Rate <= 0 {
		opts.Rate = 50
	}
	if opts.Poll <= 0 {
		opts.Poll = 250 * time.Millisecond
	}
	if opts.Lease <= 0 {
		opts.Lease = opts.Timeout + time.Minute
	}
	if opts.MaxRetryAfter <= 0 {
		opts.MaxRetryAfter = 24 * time.Hour
	}
	return &Deliverer{cfg: cfg, sender: sender, opts: opts, wake: make(chan struct{}, 1),
		inflight: map[uuid.UUID]int{}, buckets: map[uuid.UUID]*bucket{}, sem: make(chan struct{}, opts.Workers)}
}

// Wake makes Run look for due deliveries now.
func (d *Deliverer) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Deliverer) now() time.Time { return d.cfg.Now().UTC().Truncate(time.Microsecond) }

type job struct {
	id, sub        uuid.UUID
	tenant         string
	url            string
	payload        []byte
	sealSubject    string
	attempts       int
	secret, prev   []byte
	prevUntil      *time.Time
	createdAt      time.Time
	eventTypeLabel string
	// leaseUntil is the next_attempt_at the lease wrote: the attempt's
	// outcome is recorded only if the row still holds it (a replay or a
	// purge while the request was under way changed the row, and wins).
	leaseUntil time.Time
}

// Run sends due deliveries until ctx ends, then waits for the requests
// under way (each bounded by Timeout). It also expires stored payloads
// hourly.
func (d *Deliverer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	svc := &Service{cfg: d.cfg}
	lastExpiry := time.Time{}
	for ctx.Err() == nil {
		if time.Since(lastExpiry) > time.Hour {
			if _, err := svc.ExpirePayloads(ctx); err != nil && ctx.Err() == nil {
				d.cfg.Logger.Warn("webhooks: expire payloads", "err", err)
			}
			lastExpiry = time.Now()
		}
		n, err := d.claimAndSend(ctx, &wg)
		if err != nil && ctx.Err() == nil {
			d.cfg.Logger.Error("webhooks: claim deliveries", "err", err)
		}
		if n > 0 && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-time.After(d.opts.Poll):
		}
	}
	return ctx.Err()
}

func (d *Deliverer) busy() ([]uuid.UUID, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []uuid.UUID
	for id, n := range d.inflight {
		if n >= d.opts.PerEndpoint {
			out = append(out, id)
		}
	}
	return out, d.opts.Workers - len(d.sem)
}

// claimAndSend takes due deliveries for the free workers and starts them.
func (d *Deliverer) claimAndSend(ctx context.Context, wg *sync.WaitGroup) (int, error) {
	busy, free := d.busy()
	if free <= 0 {
		// Wait for a worker to finish.
		select {
		case d.sem <- struct{}{}:
			<-d.sem
		case <-ctx.Done():
		}
		return 0, nil
	}
	if busy == nil {
		busy = []uuid.UUID{}
	}
	now := d.now()
	// Microseconds, as PostgreSQL keeps them, so that record can match it.
	leaseUntil := now.Add(d.opts.Lease).Truncate(time.Microsecond)
	rows, err := d.cfg.Pool.Query(ctx, `WITH due AS (
			SELECT dl.id FROM webhook_deliveries dl JOIN webhook_subscriptions s ON s.id = dl.subscription_id
			WHERE dl.state = 'pending' AND dl.next_attempt_at <= $1 AND s.state = 'active' AND NOT (dl.subscription_id = ANY($2))
			ORDER BY dl.next_attempt_at LIMIT $3 FOR UPDATE OF dl SKIP LOCKED)
		UPDATE webhook_deliveries dl SET next_attempt_at = $4 FROM due, webhook_subscriptions s
		WHERE dl.id = due.id AND s.id = dl.subscription_id
		RETURNING dl.id, dl.subscription_id, dl.tenant, s.url, dl.payload, dl.seal_subject, dl.attempts, s.secret, s.previous_secret, s.previous_until, dl.created_at, dl.event_type`,
		now, busy, free, leaseUntil)
	if err != nil {
		return 0, err
	}
	var jobs []job
	for rows.Next() {
		var j job
		if err := rows.Scan(&j.id, &j.sub, &j.tenant, &j.url, &j.payload, &j.sealSubject, &j.attempts, &j.secret, &j.prev, &j.prevUntil, &j.createdAt, &j.eventTypeLabel); err != nil {
			rows.Close()
			return 0, err
		}
		j.leaseUntil = leaseUntil
		jobs = append(jobs, j)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, j := range jobs {
		d.mu.Lock()
		d.inflight[j.sub]++
		d.mu.Unlock()
		d.sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				<-d.sem
				d.mu.Lock()
				if d.inflight[j.sub]--; d.inflight[j.sub] <= 0 {
					delete(d.inflight, j.sub)
				}
				d.mu.Unlock()
				d.Wake()
			}()
			if err := d.attempt(context.WithoutCancel(ctx), ctx, j); err != nil {
				d.cfg.Logger.Error("webhooks: delivery", "delivery", j.id, "err", err)
			}
		}()
	}
	return len(jobs), nil
}

// attempt sends one delivery once and records the outcome. stop ends the
// rate-limit wait (the lease then brings the delivery back).
func (d *Deliverer) attempt(ctx, stop context.Context, j job) error {
	if j.payload == nil {
		_, err := d.cfg.Pool.Exec(ctx, `UPDATE webhook_deliveries SET state = 'purged' WHERE id = $1 AND state = 'pending'`, j.id)
		return err
	}
	body := j.payload
	if j.sealSubject != "" {
		plain, err := d.cfg.Ledger.Sealer().OpenSecret(ctx, j.tenant, domain.Subject(j.sealSubject), payloadPurpose(j.id), j.payload)
		if errors.Is(err, domain.ErrSubjectErased) {
			_, err = d.cfg.Pool.Exec(ctx, `UPDATE webhook_deliveries SET state = 'purged', payload = NULL WHERE id = $1`, j.id)
			return err
		}
		if err != nil {
			return err
		}
		body = plain
	}
	secrets := []string{}
	for i, sealed := range [][]byte{j.secret, j.prev} {
		if len(sealed) == 0 || (i == 1 && (j.prevUntil == nil || !d.now().Before(*j.prevUntil))) {
			continue
		}
		s, err := d.cfg.Ledger.Sealer().OpenSecret(ctx, j.tenant, secretsSubject, secretPurpose(j.sub.String()), sealed)
		if err != nil {
			return fmt.Errorf("open secret of %s: %w", j.sub, err)
		}
		secrets = append(secrets, string(s))
	}
	if err := d.bucket(j.sub).wait(stop); err != nil {
		return nil // stopping: the lease brings the delivery back
	}
	ts := d.now().Unix()
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Vigil-Webhooks/1")
	h.Set("webhook-id", j.id.String())
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	h.Set("webhook-signature", Sign(j.id.String(), ts, body, secrets...))
	actx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	start := time.Now()
	status, retryAfter, sendErr := d.sender.Send(actx, j.url, h, body)
	latency := time.Since(start)
	cancel()
	return d.record(ctx, j, status, retryAfter, sendErr, latency)
}

func (d *Deliverer) record(ctx context.Context, j job, status int, retryAfter time.Duration, sendErr error, latency time.Duration) error {
	now := d.now()
	attempt := j.attempts + 1
	errText := ""
	if sendErr != nil {
		// The subscriber sees a category; the detail (resolver, resolved
		// addresses) stays in the server log.
		errText = SendErrorCategory(sendErr)
		d.cfg.Logger.Warn("webhooks: attempt failed", "delivery", j.id, "subscription", j.sub, "attempt", attempt, "category", errText, "err", sendErr)
	}
	ms := int(latency.Milliseconds())
	tx, err := d.cfg.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (delivery_id, attempt) DO UPDATE SET at = EXCLUDED.at, status_code = EXCLUDED.status_code, latency_ms = EXCLUDED.latency_ms, error = EXCLUDED.error`,
		j.id, attempt, now, status, ms, errText); err != nil {
		return err
	}
	switch {
	case sendErr == nil && status >= 200 && status < 300:
		_, err = tx.Exec(ctx, `UPDATE webhook_deliveries SET state = 'delivered', attempts = $2, delivered_at = $3, last_status = $4, last_error = '', last_latency_ms = $5
			WHERE id = $1 AND state = 'pending' AND next_attempt_at = $6`, j.id, attempt, now, status, ms, j.leaseUntil)
	case sendErr == nil && status == http.StatusGone:
		// The receiver asked to stop: disable the subscription; the
		// delivery waits (pending) in case it is re-enabled.
		if _, err = tx.Exec(ctx, `UPDATE webhook_subscriptions SET state = 'disabled', disabled_reason = 'endpoint answered 410 Gone', updated_at = $2
			WHERE id = $1 AND state = 'active'`, j.sub, now); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE webhook_deliveries SET attempts = $2, next_attempt_at = $3, last_status = $4, last_error = 'gone', last_latency_ms = $5
			WHERE id = $1 AND state = 'pending' AND next_attempt_at = $6`, j.id, attempt, now, status, ms, j.leaseUntil)
	default:
		if errText == "" {
			errText = "HTTP " + strconv.Itoa(status)
		}
		if attempt >= len(d.opts.Schedule) {
			_, err = tx.Exec(ctx, `UPDATE webhook_deliveries SET state = 'dead', attempts = $2, last_status = $3, last_error = $4, last_latency_ms = $5
				WHERE id = $1 AND state = 'pending' AND next_attempt_at = $6`, j.id, attempt, status, errText, ms, j.leaseUntil)
			break
		}
		delay := d.jitter(d.opts.Schedule[attempt])
		if retryAfter > 0 {
			delay = max(delay, min(retryAfter, d.opts.MaxRetryAfter))
		}
		_, err = tx.Exec(ctx, `UPDATE webhook_deliveries SET attempts = $2, next_attempt_at = $3, last_status = $4, last_error = $5, last_latency_ms = $6
			WHERE id = $1 AND state = 'pending' AND next_attempt_at = $7`, j.id, attempt, now.Add(delay), status, errText, ms, j.leaseUntil)
	}
	if err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (d *Deliverer) jitter(delay time.Duration) time.Duration {
	if d.opts.Jitter == 0 || delay <= 0 {
		return delay
	}
	f := 1 + d.opts.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(delay) * f)
}

func (d *Deliverer) bucket(sub uuid.UUID) *bucket {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, ok := d.buckets[sub]
	if !ok {
		b = &bucket{rate: d.opts.Rate, tokens: d.opts.Rate, last: time.Now()}
		d.buckets[sub] = b
	}
	return b
}

// bucket is a token bucket: rate tokens a second, at most rate stored.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func (b *bucket) wait(ctx context.Context) error {
	for {
		b.mu.Lock()
		now := time.Now()
		b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
		if b.tokens >= 1 {
			b.tokens--
			b.mu.Unlock()
			return nil
		}
		need := time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(need):
		}
	}
}
