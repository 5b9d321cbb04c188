package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/vigilhq/vigil/relay"
)

// simGateway is one entry of GET /v1/gateways.
type simGateway struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	UDP     string `json:"udp_address"`
	Load    int    `json:"load"`
}

// gateways asks the registry for the gateways of session guid, as the
// applet does before it dials one: least loaded first.
func (c *simClient) gateways(ctx context.Context, guid string) ([]simGateway, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/gateways", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Session "+guid)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /v1/gateways: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("GET /v1/gateways: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/gateways: status %d: %.200s", resp.StatusCode, raw)
	}
	var out struct {
		Gateways []simGateway `json:"gateways"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("GET /v1/gateways: %w", err)
	}
	return out.Gateways, nil
}

// relaySession runs a session's relayed part as the applet and the console
// would: it downloads the gateway list, dials the first gateway that
// answers (a dead one is skipped: the registry may still list a node that
// died less than a TTL ago), and pushes data both ways through it. With no
// gateway listed it uses --relay itself.
func (s *simulator) relaySession(ctx context.Context, ss *simSession) error {
	n := 64<<10 + ss.r.IntN(64<<10)
	gws, err := s.c.gateways(ctx, ss.id)
	if err != nil {
		return err
	}
	if len(gws) == 0 {
		gws = []simGateway{{ID: "--relay", Address: s.cfg.relay}}
	}
	var errs []error
	for _, gw := range gws {
		tc := s.cfg.relayTLS.Clone()
		if host, _, err := net.SplitHostPort(gw.Address); err == nil {
			tc.ServerName = host
		}
		err := simRelaySession(ctx, gw.Address, tc, ss.id, ss.holder.token, n, func(cust, tech *tls.Conn) error {
			return s.simP2P(ctx, ss, gw, cust, tech)
		})
		var refused *relay.RefusedError
		var p2p *simP2PError
		if err != nil && !errors.As(err, &refused) && !errors.As(err, &p2p) && ctx.Err() == nil {
			// Unreachable, or lost mid-session (a node that died): the
			// applet and the console start over on the next gateway.
			errs = append(errs, fmt.Errorf("gateway %s: %w", gw.ID, err))
			continue
		}
		if err != nil {
			return fmt.Errorf("gateway %s: %w", gw.ID, err)
		}
		s.mu.Lock()
		if s.gateways == nil {
			s.gateways = map[string]int{}
		}
		s.gateways[gw.ID]++
		s.mu.Unlock()
		return nil
	}
	return errors.Join(errs...)
}
