package relay

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// CertReloader serves a certificate and key from files and reloads them
// when either file changes, so that a renewed certificate takes effect
// without a restart (which would cut every relayed support session). It
// looks at the files at most once per Interval, on a handshake; a pair of
// files that does not load (a renewal half written, a key that does not
// match) is logged and the previous certificate kept.
type CertReloader struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp
	checked time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// NewCertReloader loads certFile and keyFile, failing when they do not
// load, and checks them again at most every interval (default 10 s).
func NewCertReloader(certFile, keyFile string, interval time.Duration, log *slog.Logger) (*CertReloader, error) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, interval: interval, log: log, now: time.Now}
	st, err := r.stamps()
	if err != nil {
		return nil, fmt.Errorf("relay certificate: %w", err)
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("relay certificate: %w", err)
	}
	r.cert, r.stamp, r.checked = &c, st, r.now()
	return r, nil
}

func (r *CertReloader) stamps() ([2]fileStamp, error) {
	var st [2]fileStamp
	for i, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return st, err
		}
		st[i] = fileStamp{fi.ModTime(), fi.Size()}
	}
	return st, nil
}

// Certificate returns the current certificate, reloading it first when
// the interval has passed and a file changed.
func (r *CertReloader) Certificate() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.checked) < r.interval {
		return r.cert
	}
	r.checked = now
	st, err := r.stamps()
	if err != nil {
		r.log.Warn("relay: checking the certificate files; keeping the loaded certificate", "err", err)
		return r.cert
	}
	if st == r.stamp {
		return r.cert
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		// Retried at the next interval: the files may be half written.
		r.log.Warn("relay: the certificate files changed but do not load; keeping the loaded certificate", "err", err)
		return r.cert
	}
	r.cert, r.stamp = &c, st
	r.log.Info("relay: certificate reloaded", "cert", r.certFile)
	return r.cert
}

// GetCertificate implements tls.Config.GetCertificate.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.Certificate(), nil
}

// ServerTLSReloading is ServerTLS with the certificate taken from r at each
// handshake.
func ServerTLSReloading(r *CertReloader) *tls.Config {
	c := ServerTLS(tls.Certificate{})
	c.Certificates = nil
	c.GetCertificate = r.GetCertificate
	return c
}
