package service_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

func TestPasswordHashing(t *testing.T) {
	h, err := service.HashPassword("Correct-Horse-9")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[0] != "scrypt" || len(parts[4]) != service.SaltLength {
		t.Fatalf("hash %q: want scrypt$N$r$p$<24-character salt>$key", h)
	}
	h2, _ := service.HashPassword("Correct-Horse-9")
	if h == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	for name, c := range map[string]struct {
		hash, pw string
		ok       bool
	}{
		"Right":     {h, "Correct-Horse-9", true},
		"Wrong":     {h, "Correct-Horse-8", false},
		"Empty":     {h, "", false},
		"Malformed": {"scrypt$1$2", "Correct-Horse-9", false},
		"OtherAlgo": {strings.Replace(h, "scrypt", "bcrypt", 1), "Correct-Horse-9", false},
		"HugeCost":  {"scrypt$1073741824$8$1$" + parts[4] + "$" + parts[5], "Correct-Horse-9", false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := service.CheckPassword(c.hash, c.pw); got != c.ok {
				t.Errorf("CheckPassword = %v, want %v", got, c.ok)
			}
		})
	}
}

func TestPasswordStrength(t *testing.T) {
	for pw, want := range map[string]int{
		"abc":                          0,
		"aaaaaaaa":                     0,
		"aaaaaaaaaaaa":                 1,
		"Abcdefgh1234":                 2,
		"Abcdefgh1234!xyz":             4,
		"correct horse battery staple": 3,
	} {
		if got := service.PasswordStrength(pw); got != want {
			t.Errorf("PasswordStrength(%q) = %d, want %d", pw, got, want)
		}
	}
}

func TestDecodeCommand(t *testing.T) {
	cases := []struct {
		name string
		body string
		ok   bool
	}{
		{"Note", `{"type":"note","text":"x"}`, true},
		{"File", `{"type":"send_file","name":"a","size":1,"md5":"` + strings.Repeat("a", 32) + `","sha256":"` + strings.Repeat("b", 64) + `"}`, true},
		{"FileWithoutSize", `{"type":"send_file","name":"a","md5":"a","sha256":"b"}`, false},
		{"Start", `{"type":"start","action":"remote_control"}`, true},
		{"StartWithoutAction", `{"type":"start"}`, false},
		{"Unknown", `{"type":"launch_missiles"}`, false},
		{"NoType", `{"text":"x"}`, false},
		{"NullType", `{"type":null}`, false},
		{"NumberType", `{"type":5}`, false},
		{"ForeignField", `{"type":"note","text":"x","url":"u"}`, false},
		{"WrongType", `{"type":"send_file","name":"a","size":"1","md5":"a","sha256":"b"}`, false},
		{"Trailing", `{"type":"note","text":"x"} {"type":"note"}`, false},
		{"Array", `[{"type":"note"}]`, false},
		{"Empty", ``, false},
		{"CustomFields", `{"type":"set_custom_fields","custom_fields":{"cfield0":"x"}}`, true},
		{"BadCustomField", `{"type":"set_custom_fields","custom_fields":{"colour":"x"}}`, false},
		{"StopWithoutID", `{"type":"stop_recording"}`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd, err := service.DecodeCommand([]byte(c.body))
			if c.ok != (err == nil) {
				t.Fatalf("err = %v, want ok %v", err, c.ok)
			}
			if err != nil && domain.ErrorCode(err) != domain.CodeInvalid {
				t.Errorf("code %s, want invalid", domain.ErrorCode(err))
			}
			if err == nil && cmd.CommandType() == "" {
				t.Error("decoded command without a type")
			}
		})
	}
}

// FuzzDecodeCommand feeds arbitrary bodies to the command decoder: it must
// never panic, must answer code invalid for whatever it refuses, what it
// accepts must hold only storable text (valid UTF-8, no NUL, no U+FFFD), and
// it must re-encode to a body it accepts again as the same command.
func FuzzDecodeCommand(f *testing.F) {
	for _, typ := range service.CommandTypes() {
		f.Add([]byte(`{"type":"` + typ + `"}`))
	}
	f.Add([]byte(`{"type":"note","text":"x"}`))
	f.Add([]byte(`{"type":"send_file","name":"a","size":1,"md5":"x","sha256":"y"}`))
	f.Add([]byte(`{"type":"set_custom_fields","custom_fields":{"cfield0":"x"}}`))
	f.Add([]byte(`{"type":"chat","from":"customer","text":"a\u0000b"}`))
	f.Add([]byte(`{"type":"note","text":"\ud800"}`))
	f.Add([]byte("{\"type\":\"note\",\"text\":\"\xff\"}"))
	f.Add([]byte(`{"type":"start_recording","recording_id":"../../etc/passwd"}`))
	f.Add([]byte(`{"type":"transfer","to_technician":"a\u0085"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		cmd, err := service.DecodeCommand(body)
		if err != nil {
			if domain.ErrorCode(err) != domain.CodeInvalid {
				t.Fatalf("refusal with code %s: %v", domain.ErrorCode(err), err)
			}
			return
		}
		assertStorable(t, cmd)
		again, err := json.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		cmd2, err := service.DecodeCommand(again)
		if err != nil {
			t.Fatalf("re-encoded command %s refused: %v", again, err)
		}
		if cmd2.CommandType() != cmd.CommandType() {
			t.Fatalf("type changed from %s to %s", cmd.CommandType(), cmd2.CommandType())
		}
	})
}
