package compliance_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
)

// A checkpoint signed by the right key for another origin must not pass:
// the origin is the key's log origin and the tenant, never what the bundle
// says.
func TestBundleOriginIsTheKeysLogAndTenant(t *testing.T) {
	f := newFixture(t)
	f.session()
	b, _ := f.export(compliance.ExportRequest{To: -1})
	ls := lines(b)
	h := header(t, b)
	evil := "evil.example/" + tenant
	n, err := ledger.SignCheckpoint(f.env.Signer, evil, h.Checkpoint.Size, h.Checkpoint.Root)
	if err != nil {
		t.Fatal(err)
	}
	h.Origin, h.Checkpoint.Note = evil, string(n)
	hb, _ := json.Marshal(h)
	forged := append(append(hb, '\n'), bytes.Join(ls[1:], nil)...)

	v := note.VerifierList(f.env.Verifier)
	tests := []struct {
		name   string
		bundle []byte
		opts   compliance.BundleVerifyOptions
		want   string // "" for success
	}{
		{"the export", b, compliance.BundleVerifyOptions{Verifiers: v}, ""},
		{"the export, origin and tenant pinned", b, compliance.BundleVerifyOptions{Verifiers: v, Origin: "vigil.test", Tenant: tenant}, ""},
		{"signed by the right key for evil.example", forged, compliance.BundleVerifyOptions{Verifiers: v}, `want exactly "vigil.test/acme"`},
		{"another expected origin", b, compliance.BundleVerifyOptions{Verifiers: v, Origin: "vigil.example"}, `the expected log origin is "vigil.example"`},
		{"another expected tenant", b, compliance.BundleVerifyOptions{Verifiers: v, Tenant: "globex"}, `not of "globex"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compliance.VerifyBundle(bytes.NewReader(tt.bundle), tt.opts)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("verify: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want it to name %q", err, tt.want)
			}
		})
	}
}

// vigil export --since must refuse a note its own verifier would refuse,
// before writing anything.
func TestExportSinceRefusesAnAlteredNote(t *testing.T) {
	f := newFixture(t)
	f.session()
	first, _ := f.export(compliance.ExportRequest{To: -1})
	older := header(t, first).Checkpoint.Note
	f.session()

	sigAt := strings.LastIndex(older, " ") + 5
	broken := []byte(older)
	broken[sigAt] ^= 1
	for name, since := range map[string][]byte{
		"a trailing blank line": []byte(older + "\n"),
		"a broken signature":    broken,
		"CRLF":                  []byte(strings.ReplaceAll(older, "\n", "\r\n")),
		"a second signature":    []byte(older + "\u2014 other AAAAAAAA\n"),
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			_, err := f.auditor.Export(f.ctx, compliance.ExportRequest{Tenant: tenant, To: -1, Since: since, Actor: domain.Actor{Kind: domain.ActorSystem}}, &buf)
			if domain.ErrorCode(err) != domain.CodeInvalid || buf.Len() != 0 {
				t.Fatalf("export: %v, %d bytes written; want invalid and nothing written", err, buf.Len())
			}
		})
	}
	b, _ := f.export(compliance.ExportRequest{To: -1, Since: []byte(older)})
	if _, err := f.verify(b, []byte(older)); err != nil {
		t.Fatalf("the genuine note: %v", err)
	}
}

// tamperBundle is a real bundle that uses every part of the format: a range
// in the middle (prefix hashes, tail proof), opened fields, a since
// checkpoint with its proof, and a prior consent with its inclusion proof.
func tamperBundle(t *testing.T) (*fixture, []byte) {
	t.Helper()
	f := newFixture(t)
	s, grant := f.session() // seq 0..5
	first, _ := f.export(compliance.ExportRequest{To: -1})
	since := []byte(header(t, first).Checkpoint.Note)                                                                // size 6; seq 6 is the export event
	f.appendEvent(s, domain.ActorTechnician, domain.RemoteControlStarted{TechnicianID: "t1", ConsentEventID: grant}) // seq 7
	f.session()                                                                                                      // seq 8..13
	if _, err := f.env.Ledger.Checkpoint(f.ctx, tenant); err != nil {                                                // size 14
		t.Fatal(err)
	}
	f.session()
	b, _ := f.export(compliance.ExportRequest{From: 7, To: 12, Open: true, Since: since})
	h := header(t, b)
	if len(h.Prefix) == 0 || len(h.TailProof) == 0 || h.Since == nil || len(h.Since.Proof) == 0 || !h.Opened {
		t.Fatalf("the bundle does not use every part of the format: %+v", h)
	}
	if !bytes.Contains(b, []byte(`"prior_consents":[{`)) || !bytes.Contains(b, []byte(`"opened":[{`)) {
		t.Fatal("no prior consent or no opened field in the bundle")
	}
	if _, err := f.verify(b, nil); err != nil {
		t.Fatalf("verify: %v", err)
	}
	return f, b
}

// Every mutation of a bundle that changes its bytes is refused: the bundle
// has one byte form, and its signature covers the values no proof covers.
func TestBundleTamperIsRefused(t *testing.T) {
	f, b := tamperBundle(t)
	refused := func(t *testing.T, what string, m []byte) {
		t.Helper()
		if bytes.Equal(m, b) {
			return
		}
		if _, err := f.verify(m, nil); err == nil {
			t.Errorf("%s: the altered bundle verifies", what)
		}
	}
	ls := lines(b)
	with := func(i int, line []byte) []byte {
		out := append([][]byte{}, ls...)
		out[i] = line
		return bytes.Join(out, nil)
	}

	t.Run("every byte changed", func(t *testing.T) {
		// One of three kinds of change per byte, in turn: a neighbour
		// character (stays base64 or a digit most of the time), a space,
		// and a case flip. -short tries every fifth byte.
		step := 1
		if testing.Short() {
			step = 5
		}
		for i := 0; i < len(b); i += step {
			c := []byte{b[i] ^ 1, ' ', b[i] ^ 0x20}[i%3]
			m := bytes.Clone(b)
			m[i] = c
			refused(t, fmt.Sprintf("byte %d %q -> %q", i, b[i], c), m)
		}
	})
	t.Run("a byte inserted or removed", func(t *testing.T) {
		for i := range b {
			if i%7 != 0 && b[i] != ':' && b[i] != ',' && b[i] != '\n' && b[i] != '"' {
				continue
			}
			refused(t, fmt.Sprintf("space before byte %d", i), append(append(bytes.Clone(b[:i]), ' '), b[i:]...))
			refused(t, fmt.Sprintf("byte %d removed", i), append(bytes.Clone(b[:i]), b[i+1:]...))
		}
	})
	t.Run("line endings", func(t *testing.T) {
		refused(t, "CRLF", bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")))
		refused(t, "an extra trailing newline", append(bytes.Clone(b), '\n'))
		refused(t, "no trailing newline", b[:len(b)-1])
		refused(t, "a blank line after the header", with(0, append(bytes.Clone(ls[0]), '\n')))
	})
	t.Run("members", func(t *testing.T) {
		for i, l := range ls {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(l, &obj); err != nil {
				t.Fatal(err)
			}
			// json.Marshal of a map sorts the members: another order.
			reordered, _ := json.Marshal(obj)
			refused(t, fmt.Sprintf("line %d reordered", i+1), with(i, append(reordered, '\n')))
			body := bytes.TrimSuffix(l, []byte("}\n"))
			refused(t, fmt.Sprintf("line %d unknown member", i+1), with(i, append(append(bytes.Clone(body), `,"x":1`...), "}\n"...)))
			refused(t, fmt.Sprintf("line %d duplicate record", i+1), with(i, append(append(bytes.Clone(body), `,"record":`...), append(bytes.Clone(obj["record"]), "}\n"...)...)))
			refused(t, fmt.Sprintf("line %d pretty-printed", i+1), with(i, bytes.ReplaceAll(l, []byte(`":`), []byte(`": `))))
			refused(t, fmt.Sprintf("line %d escaped", i+1), with(i, bytes.Replace(l, []byte(`"record"`), []byte(`"\u0072ecord"`), 1)))
		}
		// Members swapped between lines, lines swapped and dropped.
		refused(t, "two events swapped", with(1, ls[2]))
		refused(t, "the end record before the last event", bytes.Join(append(append(append([][]byte{}, ls[:len(ls)-2]...), ls[len(ls)-1]), ls[len(ls)-2]), nil))
	})
	t.Run("non-canonical base64", func(t *testing.T) {
		// Every base64 string of the bundle with its stray padding bits set,
		// or with a line break inside: the same bytes for a lax decoder.
		n := 0
		for i, l := range ls {
			for _, q := range bytes.Split(l, []byte(`"`)) {
				raw, err := base64.StdEncoding.Strict().DecodeString(string(q))
				if err != nil || len(q) < 8 || len(raw)%3 == 0 || base64.StdEncoding.EncodeToString(raw) != string(q) {
					continue
				}
				pad := bytes.IndexByte(q, '=')
				lax := bytes.Clone(q)
				lax[pad-1] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", lax[pad-1])|1]
				if got, err := base64.StdEncoding.DecodeString(string(lax)); err != nil || !bytes.Equal(got, raw) {
					continue // the bit was not a stray one
				}
				n++
				refused(t, fmt.Sprintf("line %d stray bits in %.12s…", i+1, q), with(i, bytes.Replace(l, q, lax, 1)))
				wrapped := append(append(bytes.Clone(q[:4]), `\n`...), q[4:]...)
				refused(t, fmt.Sprintf("line %d line break in %.12s…", i+1, q), with(i, bytes.Replace(l, q, wrapped, 1)))
			}
		}
		if n == 0 {
			t.Fatal("no base64 string with stray bits found")
		}
	})
	t.Run("nulls and empties", func(t *testing.T) {
		refused(t, "empty prior consents", with(len(ls)-1, bytes.Replace(ls[len(ls)-1], []byte(`"prior_consents":[`), []byte(`"prior_consents":[],"x":[`), 1)))
		refused(t, "opened in a line with none", with(1, bytes.Replace(ls[1], []byte(`}`+"\n"), []byte(`,"opened":[]}`+"\n"), 1)))
		refused(t, "opened flag cleared", with(0, bytes.Replace(ls[0], []byte(`"opened":true`), []byte(`"opened":false`), 1)))
		end := ls[len(ls)-1]
		refused(t, "signature removed", with(len(ls)-1, append(bytes.Clone(end[:bytes.Index(end, []byte(`,"signature"`))]), "}\n"...)))
	})
}

// Once a bundle and its opened values are signed, an opened value changed
// in a way that keeps its name and subject is still refused.
func TestBundleOpenedValueIsSigned(t *testing.T) {
	f, b := tamperBundle(t)
	i := bytes.Index(b, []byte(`"value":"hello from `))
	if i < 0 {
		t.Fatal("no opened chat text")
	}
	m := bytes.Clone(b)
	m[i+len(`"value":"h`)] = 'j'
	if _, err := f.verify(m, nil); err == nil || !strings.Contains(err.Error(), "bundle signature") {
		t.Fatalf("err = %v, want the bundle signature to fail", err)
	}
}

// The bundle statement is signed with the checkpoint key, so it must never
// be mistaken for a checkpoint, nor a checkpoint signed as a statement.
func TestBundleStatementIsNotACheckpoint(t *testing.T) {
	f := newFixture(t)
	text := compliance.BundleStatement("vigil.test/"+tenant, [32]byte{1})
	if _, err := ledger.ParseCheckpointBody(text); err == nil {
		t.Errorf("the statement %q parses as a checkpoint", text)
	}
	if _, err := f.env.Ledger.SignStatement(f.ctx, ledger.CheckpointBody("vigil.test/"+tenant, 1, [32]byte{1})); err == nil {
		t.Error("SignStatement signed a checkpoint body")
	}
}
