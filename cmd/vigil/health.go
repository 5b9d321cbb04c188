package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// runHealth asks a running serve's /readyz and exits 0 when it is ready,
// 1 otherwise: the health check of containers, whose image has no shell or
// curl. It needs neither database nor keys.
func runHealth(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "vigil health [--url URL] [--timeout D]", "Asks a running 'vigil serve' whether it is ready (GET /readyz); exits 0 when it is, 1 when not.")
	rawURL := fs.String("url", "", "URL to ask: a base URL such as http://host:8080 gets /readyz appended (default: VIGIL_HTTP_ADDR, with a wildcard host read as 127.0.0.1; https when VIGIL_HTTP_TLS_CERT_FILE is set, its certificate not verified)")
	timeout := fs.Duration("timeout", 3*time.Second, "time limit of the request")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *rawURL == "" {
		base, err := localAPIURL(env)
		if err != nil {
			return err
		}
		*rawURL = base
	}
	u, err := url.Parse(*rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return exitError{code: 2, msg: fmt.Sprintf("--url %q: want http(s)://host[:port][/path]", *rawURL)}
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/readyz"
	}
	target := u.String()
	client := http.DefaultClient
	if u.Scheme == "https" {
		// A probe of the local process: the certificate names the public
		// host, not the address probed, so it is not verified.
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
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

// localAPIURL returns the base URL of the API of a serve on this host, from
// VIGIL_HTTP_ADDR (default 127.0.0.1:8080), a wildcard host read as
// 127.0.0.1, https when VIGIL_HTTP_TLS_CERT_FILE is set.
func localAPIURL(env func(string) string) (string, error) {
	addr := env("VIGIL_HTTP_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("VIGIL_HTTP_ADDR=%q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http"
	if env("VIGIL_HTTP_TLS_CERT_FILE") != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}
