package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/vigilhq/vigil/domain"
)

// Command is a decoded session command: one of the *Cmd types below.
type Command interface {
	// CommandType returns the command's type as sent, such as "send_file".
	CommandType() string
}

// The session commands of docs/api.md. Each decodes strictly: a field of
// another command is an unknown field. The text tags are the limits of
// docs/api.md, "Text inputs" (text.go).
type (
	// ConnectCustomerCmd: the customer's applet connected.
	ConnectCustomerCmd struct {
		Type          string `json:"type" text:"line,64"`
		Platform      string `json:"platform" text:"line,64"`
		IP            string `json:"ip,omitempty" text:"line,64"`
		AppletVersion string `json:"applet_version,omitempty" text:"line,64"`
	}
	// BareCmd: pick_up, reboot, reconnected, view_system_info,
	// request_credentials.
	BareCmd struct {
		Type string `json:"type" text:"line,64"`
	}
	// ActionCmd: request_consent, grant_consent, deny_consent, start, end.
	ActionCmd struct {
		Type   string `json:"type" text:"line,64"`
		Action string `json:"action" text:"line,64"`
		Reason string `json:"reason,omitempty" text:"text,1000"`
	}
	// FileCmd: send_file, receive_file.
	FileCmd struct {
		Type   string `json:"type" text:"line,64"`
		Name   string `json:"name" text:"line,1024"`
		Size   *int64 `json:"size"`
		MD5    string `json:"md5" text:"line,64"`
		SHA256 string `json:"sha256" text:"line,128"`
	}
	// DeployScriptCmd: deploy_script.
	DeployScriptCmd struct {
		Type   string `json:"type" text:"line,64"`
		Name   string `json:"name" text:"line,1024"`
		SHA256 string `json:"sha256,omitempty" text:"line,128"`
	}
	// SendURLCmd: send_url.
	SendURLCmd struct {
		Type string `json:"type" text:"line,64"`
		URL  string `json:"url" text:"line,2048"`
	}
	// ChatCmd: chat.
	ChatCmd struct {
		Type string `json:"type" text:"line,64"`
		From string `json:"from" text:"line,64"`
		Text string `json:"text" text:"text,10000"`
	}
	// NoteCmd: note.
	NoteCmd struct {
		Type string `json:"type" text:"line,64"`
		Text string `json:"text" text:"text,10000"`
	}
	// CustomFieldsCmd: set_custom_fields.
	CustomFieldsCmd struct {
		Type         string            `json:"type" text:"line,64"`
		CustomFields map[string]string `json:"custom_fields" text:"line,128"`
	}
	// TransferCmd: transfer.
	TransferCmd struct {
		Type         string `json:"type" text:"line,64"`
		ToTechnician string `json:"to_technician" text:"id"`
		Reason       string `json:"reason,omitempty" text:"text,1000"`
	}
	// RecordingCmd: start_recording, stop_recording.
	RecordingCmd struct {
		Type        string `json:"type" text:"line,64"`
		RecordingID string `json:"recording_id,omitempty" text:"id"`
		Reason      string `json:"reason,omitempty" text:"text,1000"`
	}
	// CloseCmd: close.
	CloseCmd struct {
		Type   string `json:"type" text:"line,64"`
		Reason string `json:"reason,omitempty" text:"text,1000"`
	}
)

// CommandType implements Command.
func (c ConnectCustomerCmd) CommandType() string { return c.Type }

// CommandType implements Command.
func (c BareCmd) CommandType() string { return c.Type }

// CommandType implements Command.
func (c ActionCmd) CommandType() string { return c.Type }

// CommandType implements Command.
func (c FileCmd) CommandType() string { return c.Type }

// CommandType implements Command.
func (c DeployScriptCmd) CommandType() string { return c.Type }

// CommandType implements Command.
func (c SendURLCmd) CommandType() string { return c.Type }

// CommandType implements Command.
func (c ChatCmd) CommandType() string { return c.Type }

// CommandType implements Command.
func (c NoteCmd) CommandType() string { return c.Type }

// CommandType implements Command.
func (c CustomFieldsCmd) CommandType() string { return c.Type }

// CommandType implements Command.
func (c TransferCmd) CommandType() string { return c.Type }

// CommandType implements Command.
func (c RecordingCmd) CommandType() string { return c.Type }

// CommandType implements Command.
func (c CloseCmd) CommandType() string { return c.Type }

// commandTypes maps each command type to a function returning a pointer to
// its zero struct.
var commandTypes = map[string]func() Command{
	"connect_customer":    func() Command { return &ConnectCustomerCmd{} },
	"pick_up":             func() Command { return &BareCmd{} },
	"reboot":              func() Command { return &BareCmd{} },
	"reconnected":         func() Command { return &BareCmd{} },
	"view_system_info":    func() Command { return &BareCmd{} },
	"request_credentials": func() Command { return &BareCmd{} },
	"request_consent":     func() Command { return &ActionCmd{} },
	"grant_consent":       func() Command { return &ActionCmd{} },
	"deny_consent":        func() Command { return &ActionCmd{} },
	"start":               func() Command { return &ActionCmd{} },
	"end":                 func() Command { return &ActionCmd{} },
	"send_file":           func() Command { return &FileCmd{} },
	"receive_file":        func() Command { return &FileCmd{} },
	"deploy_script":       func() Command { return &DeployScriptCmd{} },
	"send_url":            func() Command { return &SendURLCmd{} },
	"chat":                func() Command { return &ChatCmd{} },
	"note":                func() Command { return &NoteCmd{} },
	"set_custom_fields":   func() Command { return &CustomFieldsCmd{} },
	"transfer":            func() Command { return &TransferCmd{} },
	"start_recording":     func() Command { return &RecordingCmd{} },
	"stop_recording":      func() Command { return &RecordingCmd{} },
	"close":               func() Command { return &CloseCmd{} },
	"p2p":                 func() Command { return &P2PCmd{} },
}

// CommandTypes returns the command type names, for documentation and tests.
func CommandTypes() []string {
	out := make([]string, 0, len(commandTypes))
	for k := range commandTypes {
		out = append(out, k)
	}
	return out
}

// CommandPrototype returns a pointer to the zero struct of command type
// typ, or nil for an unknown type: for documentation and tests, which read
// its fields' text rules.
func CommandPrototype(typ string) Command {
	if mk, ok := commandTypes[typ]; ok {
		return mk()
	}
	return nil
}

// DecodeCommand decodes a command body. It returns an error of code invalid
// for malformed JSON, text that breaks its field's rule (see DecodeStrict),
// a missing or unknown type, unknown fields, wrong field types, missing
// required fields, or trailing data.
func DecodeCommand(body []byte) (Command, error) {
	if err := checkRawText(body); err != nil {
		return nil, err
	}
	var head struct {
		Type *string `json:"type"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return nil, domain.Errorf(domain.CodeInvalid, "malformed JSON: %v", jsonProblem(err))
	}
	if head.Type == nil || *head.Type == "" {
		return nil, domain.Errorf(domain.CodeInvalid, "command without a type")
	}
	mk, ok := commandTypes[*head.Type]
	if !ok {
		if err := (TextRule{Kind: TextLine, Max: 64}).Check("type", *head.Type); err != nil {
			return nil, err
		}
		return nil, domain.Errorf(domain.CodeInvalid, "unknown command type %q", *head.Type)
	}
	c := mk()
	if err := DecodeStrict(body, c); err != nil {
		return nil, err
	}
	cmd := deref(c)
	if err := validateCommand(cmd); err != nil {
		return nil, err
	}
	return cmd, nil
}

// DecodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data, with errors of code invalid. It is where text enters:
// the body must be valid UTF-8 and not null, and every decoded string must
// keep its field's text rule (CheckText): no NUL, no U+FFFD (what
// encoding/json makes of a lone surrogate escape), no control characters
// but line feeds and tabs in free text, and the field's length. Whatever it
// accepts, PostgreSQL can store.
func DecodeStrict(body []byte, v any) error {
	if err := checkRawText(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return domain.Errorf(domain.CodeInvalid, "%v", jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return domain.Errorf(domain.CodeInvalid, "trailing data after the JSON value")
	}
	return CheckText(v)
}

func jsonProblem(err error) string {
	switch e := err.(type) {
	case *json.UnmarshalTypeError:
		return fmt.Sprintf("field %q must be of type %s, not %s", e.Field, e.Type, e.Value)
	case *json.SyntaxError:
		return fmt.Sprintf("malformed JSON at byte %d", e.Offset)
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return "empty or truncated JSON"
	}
	return err.Error()
}

func deref(c Command) Command {
	switch v := c.(type) {
	case *ConnectCustomerCmd:
		return *v
	case *BareCmd:
		return *v
	case *ActionCmd:
		return *v
	case *FileCmd:
		return *v
	case *DeployScriptCmd:
		return *v
	case *SendURLCmd:
		return *v
	case *ChatCmd:
		return *v
	case *NoteCmd:
		return *v
	case *CustomFieldsCmd:
		return *v
	case *TransferCmd:
		return *v
	case *RecordingCmd:
		return *v
	case *CloseCmd:
		return *v
	}
	return c
}

func validateCommand(c Command) error {
	missing := func(field string) error {
		return domain.Errorf(domain.CodeInvalid, "%s needs %s", c.CommandType(), field)
	}
	switch v := c.(type) {
	case ConnectCustomerCmd:
		if v.Platform == "" {
			return missing("platform")
		}
	case ActionCmd:
		if v.Action == "" {
			return missing("action")
		}
	case FileCmd:
		switch {
		case v.Name == "":
			return missing("name")
		case v.Size == nil:
			return missing("size")
		case v.MD5 == "" || v.SHA256 == "":
			return missing("md5 and sha256")
		}
	case DeployScriptCmd:
		if v.Name == "" {
			return missing("name")
		}
	case SendURLCmd:
		if v.URL == "" {
			return missing("url")
		}
	case ChatCmd:
		if v.Text == "" || v.From == "" {
			return missing("from and text")
		}
	case NoteCmd:
		if v.Text == "" {
			return missing("text")
		}
	case CustomFieldsCmd:
		if len(v.CustomFields) == 0 {
			return missing("custom_fields")
		}
		return ValidateCustomFields(v.CustomFields)
	case TransferCmd:
		if v.ToTechnician == "" {
			return missing("to_technician")
		}
	case RecordingCmd:
		if v.Type == "stop_recording" && v.RecordingID == "" {
			return missing("recording_id")
		}
	}
	return nil
}

// ValidateCustomFields checks custom field names (cfield0 to cfield5) and
// lengths (cfield0 up to 128 characters, the others up to 64), as in the
// whitepaper's product.
func ValidateCustomFields(f map[string]string) error {
	for k, v := range f {
		limit := 64
		switch k {
		case "cfield0":
			limit = 128
		case "cfield1", "cfield2", "cfield3", "cfield4", "cfield5":
		default:
			return domain.Errorf(domain.CodeInvalid, "custom field %q: want cfield0 to cfield5", k)
		}
		if n := len([]rune(v)); n > limit {
			return domain.Errorf(domain.CodeInvalid, "custom field %s has %d characters, at most %d", k, n, limit)
		}
	}
	return nil
}
