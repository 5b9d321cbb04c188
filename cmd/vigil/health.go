package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// runHealth asks a running serve's /readyz and exits 0 when it is ready,
// 1 otherwise: the health check of containers, whose image has no shell or
// curl. It needs neither database nor keys.
func runHealth(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := env("VIGIL_HTTP_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	url := fs.String("url", "", "URL to ask (default: /readyz on VIGIL_HTTP_ADDR, with a wildcard host read as 127.0.0.1; https when VIGIL_HTTP_TLS_CERT_FILE is set, its certificate not verified)")
	timeout := fs.Duration("timeout", 3*time.Second, "time limit of the request")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *url == "" {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("VIGIL_HTTP_ADDR=%q: %w", addr, err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		scheme := "http"
		if env("VIGIL_HTTP_TLS_CERT_FILE") != "" {
			scheme = "https"
		}
		*url = scheme + "://" + net.JoinHostPort(host, port) + "/readyz"
	}
	client := http.DefaultClient
	if strings.HasPrefix(*url, "https://") {
		// A probe of the local process: the certificate names the public
		// host, not the address probed, so it is not verified.
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return exitError{code: 2, msg: err.Error()}
	}
	res, err := client.Do(req)
	if err != nil {
		return exitError{code: 1, msg: "not healthy: " + err.Error()}
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return exitError{code: 1, msg: fmt.Sprintf("not ready: %s %s", res.Status, body)}
	}
	fmt.Fprintf(stdout, "ready: %s\n", body)
	return nil
}
