package domain_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vigilhq/vigil/domain"
)

// FuzzDecodeEvent feeds arbitrary JSON, as public data and as one personal
// field, into Decode for every registered type. Decode must never panic, and
// whatever it accepts must re-encode to a canonical form that decodes to
// the same payload and re-encodes byte for byte the same.
func FuzzDecodeEvent(f *testing.F) {
	types := domain.Catalogue.Types()
	for i, name := range types {
		e, err := domain.NewEvent(domain.Meta{Tenant: "acme", Stream: streamFor(name), Actor: domain.Actor{Kind: domain.ActorSystem}}, sample(f, name))
		if err != nil {
			f.Fatal(err)
		}
		var pname string
		var pval []byte
		if len(e.Personal) > 0 {
			pname, pval = e.Personal[0].Name, e.Personal[0].Value
		}
		f.Add(uint16(i), []byte(e.Data), pname, pval)
	}
	f.Add(uint16(0), []byte(`{"guid":"x","pin":"1","queue":"shared","group_id":"g"} trailing`), "", []byte(nil))
	f.Add(uint16(3), []byte(`null`), "text", []byte(`"hi"`))
	f.Add(uint16(7), []byte(`{"until":"2025-01-01T00:00:00+01:00","failures":-0}`), "", []byte(nil))
	f.Add(uint16(9), []byte(`{"consent_event_id":"urn:uuid:0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b"}`), "", []byte(nil))

	f.Fuzz(func(t *testing.T, typ uint16, data []byte, pname string, pval []byte) {
		name := types[int(typ)%len(types)]
		e := domain.Event{Tenant: "acme", Stream: streamFor(name), Type: name, Schema: 1, Data: data}
		if pname != "" {
			e.Personal = []domain.PersonalField{{Name: pname, Subject: "session:x", Value: pval}}
		}
		p, err := domain.Decode(e)
		if err != nil {
			if domain.ErrorCode(err) != domain.CodeInvalid {
				t.Fatalf("Decode error of code %q: %v", domain.ErrorCode(err), err)
			}
			return
		}
		v := reflect.ValueOf(p).Elem().Interface().(domain.Payload)
		data1, pers1, err := domain.Catalogue.Encode(v)
		if err != nil {
			t.Fatalf("re-encode of accepted %s: %v", name, err)
		}
		e2 := domain.Event{Tenant: "acme", Stream: e.Stream, Type: name, Schema: 1, Data: data1}
		for k, val := range pers1 {
			e2.Personal = append(e2.Personal, domain.PersonalField{Name: k, Subject: "session:x", Value: val})
		}
		p2, err := domain.Decode(e2)
		if err != nil {
			t.Fatalf("decode of re-encoded %s: %v\ndata: %s", name, err, data1)
		}
		if diff := cmp.Diff(p, p2); diff != "" {
			t.Fatalf("payload changed on re-encode (-first +second):\n%s", diff)
		}
		data2, pers2, err := domain.Catalogue.Encode(reflect.ValueOf(p2).Elem().Interface().(domain.Payload))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data1, data2) {
			t.Fatalf("unstable encoding:\n%s\n%s", data1, data2)
		}
		if diff := cmp.Diff(rawStrings(pers1), rawStrings(pers2)); diff != "" {
			t.Fatalf("unstable personal encoding (-first +second):\n%s", diff)
		}
	})
}

func rawStrings(m map[string]json.RawMessage) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}
