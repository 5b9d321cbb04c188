package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
)

// The DPO desk: GDPR export and erasure through the same compliance
// service as /v1/gdpr (same rules, same events). Vigil has no separate
// data-protection role: the GDPR service accepts admin keys only, so the
// desk is the admins'.

type dpoPage struct {
	Erasure     *compliance.Erasure
	VerifierKey string
}

var errNoGDPR = domain.Errorf(domain.CodeNotFound, "GDPR services are not configured on this node")

func (c *Console) dpo(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	if c.opts.GDPR == nil {
		return errNoGDPR
	}
	d := dpoPage{VerifierKey: c.opts.VerifierKey}
	if id := strings.TrimSpace(r.URL.Query().Get("erasure")); id != "" {
		e, err := c.opts.GDPR.Erasure(r.Context(), rc.p, id)
		if err != nil {
			return err
		}
		d.Erasure = &e
	}
	c.render(w, r, rc, http.StatusOK, "dpo", "DPO desk", d)
	return nil
}

// dpoExport answers everything about a subject as a JSON download; the
// export is recorded as compliance.subject_exported.
func (c *Console) dpoExport(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	if c.opts.GDPR == nil {
		return errNoGDPR
	}
	subject := strings.TrimSpace(r.PostFormValue("subject"))
	x, err := c.opts.GDPR.ExportSubject(r.Context(), rc.p, subject)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+strings.ReplaceAll(subject, ":", "-")+`-export.json"`)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(x)
}

func (c *Console) dpoErase(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	if c.opts.GDPR == nil {
		return errNoGDPR
	}
	req := compliance.ErasureRequest{Subject: strings.TrimSpace(r.PostFormValue("subject")), Scope: r.PostFormValue("scope"),
		Reason: strings.TrimSpace(r.PostFormValue("reason"))}
	if v := strings.TrimSpace(r.PostFormValue("delay_hours")); v != "" {
		var h float64
		if _, err := fmt.Sscan(v, &h); err != nil || h < 0 {
			return domain.Errorf(domain.CodeInvalid, "delay %q: want a number of hours, 0 for at once", v)
		}
		d := time.Duration(h * float64(time.Hour))
		req.Delay = &d
	}
	e, err := c.opts.GDPR.RequestErasure(r.Context(), rc.p, req)
	if err != nil {
		return err
	}
	http.Redirect(w, r, Prefix+"dpo?erasure="+e.ID+"&done="+urlQuery("Erasure "+e.ID+" requested ("+e.State+")."), http.StatusSeeOther)
	return nil
}

func (c *Console) dpoRevoke(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	if c.opts.GDPR == nil {
		return errNoGDPR
	}
	e, err := c.opts.GDPR.RevokeErasure(r.Context(), rc.p, r.PathValue("id"), strings.TrimSpace(r.PostFormValue("reason")))
	if err != nil {
		return err
	}
	http.Redirect(w, r, Prefix+"dpo?erasure="+e.ID+"&done="+urlQuery("Erasure "+e.ID+" revoked."), http.StatusSeeOther)
	return nil
}
