package service

import (
	"strings"
	"testing"

	"github.com/vigilhq/vigil/domain"
)

// A new user writes the permission name where the action is meant: an
// unambiguous one is accepted, an ambiguous one and any unknown name are
// refused with the valid actions listed.
func TestParseActionNamesTheValidActions(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want domain.Action
		err  []string
	}{
		{in: "send_file", want: domain.ActionSendFile},
		{in: "all", want: domain.ActionOneTimePrompt},
		{in: "transfer_session", want: domain.ActionTransfer},
		{in: "record_sessions", want: domain.ActionRecord},
		{in: "file_transfer", err: []string{`unknown action "file_transfer"`, "send_file, receive_file", "valid actions: all, remote_control"}},
		{in: "frobnicate", err: []string{`unknown action "frobnicate"`, "valid actions: all, remote_control", "send_file", "screen_share"}},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseAction(tt.in)
			if tt.err == nil {
				if err != nil || got != tt.want {
					t.Fatalf("parseAction(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
				}
				return
			}
			if domain.ErrorCode(err) != domain.CodeInvalid {
				t.Fatalf("parseAction(%q): %v, want invalid", tt.in, err)
			}
			for _, w := range tt.err {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
