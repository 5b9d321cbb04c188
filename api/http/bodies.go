package httpapi

import (
	"encoding/json"
	"mime"
	"net/http"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/webhooks"
)

// The request bodies of the API, each with the text rules of its fields
// (`text:"kind[,max]"`, checked by service.DecodeStrict; docs/api.md, "Text
// inputs"). They are named, rather than declared inside their handlers, so
// that FuzzDecodeBody can reach them all.

type groupBody struct {
	Name        *string               `json:"name" text:"line,256"`
	Permissions *domain.PermissionSet `json:"permissions"`
	Policy      *json.RawMessage      `json:"policy"`
	IPAllowlist *[]string             `json:"ip_allowlist" text:"line,64"`
}

type technicianBody struct {
	Email              string `json:"email" text:"line,254"`
	Name               string `json:"name" text:"line,256"`
	GroupID            string `json:"group_id" text:"id"`
	Password           string `json:"password" text:"line,1024"`
	MustChangePassword bool   `json:"must_change_password"`
}

type reasonBody struct {
	Reason string `json:"reason" text:"text,1000"`
}

type loginBody struct {
	Email       string `json:"email" text:"line,254"`
	Password    string `json:"password" text:"line,1024"`
	TOTP        string `json:"totp" text:"line,16"`
	NewPassword string `json:"new_password" text:"line,1024"`
	Tenant      string `json:"tenant" text:"id"`
}

type ssoConfigBody struct {
	MetadataXML       string `json:"metadata_xml" text:"text,524288"`
	MetadataURL       string `json:"metadata_url" text:"line,2048"`
	IDAttribute       string `json:"id_attribute" text:"line,256"`
	JITGroupID        string `json:"jit_group_id" text:"id"`
	Enabled           *bool  `json:"enabled"`
	AllowIdPInitiated bool   `json:"allow_idp_initiated"`
}

// ssoIDBody sets a technician's SSO id; "" clears it.
type ssoIDBody struct {
	SSOID string `json:"sso_id" text:"line,256"`
}

type passwordBody struct {
	CurrentPassword string `json:"current_password" text:"line,1024"`
	NewPassword     string `json:"new_password" text:"line,1024"`
	TOTP            string `json:"totp" text:"line,16"`
}

type totpBody struct {
	Code string `json:"code" text:"line,16"`
}

type sessionBody struct {
	Queue        string `json:"queue" text:"line,64"`
	Channel      string `json:"channel" text:"line,128"`
	GroupID      string `json:"group_id" text:"id"`
	TechnicianID string `json:"technician_id" text:"id"`
	Customer     struct {
		Name  string `json:"name" text:"line,256"`
		Email string `json:"email" text:"line,254"`
	} `json:"customer"`
	CustomFields map[string]string `json:"custom_fields" text:"line,128"`
	TrackingID   string            `json:"tracking_id" text:"line,128"`
}

type gdprExportBody struct {
	Subject string `json:"subject" text:"line,200"`
}

type gdprEraseBody struct {
	Subject string  `json:"subject" text:"line,200"`
	Delay   *string `json:"delay" text:"line,64"`
	Scope   string  `json:"scope" text:"line,16"`
	Reason  string  `json:"reason" text:"text,200"`
}

type replayBody struct {
	Since string `json:"since" text:"line,64"`
}

type relayAuthorizeBody struct {
	Side    string `json:"side" text:"line,16"`
	Session string `json:"session" text:"id"`
	Token   string `json:"token,omitempty" text:"line,256"`
}

type relayClosedBody struct {
	Sessions []service.RelaySession `json:"sessions"`
}

// bodies lists a zero value of every body type, for the fuzz target and
// its tests; webhooks.NewSubscription and SubscriptionChange carry their
// own tags.
func bodies() []func() any {
	return []func() any{
		func() any { return &groupBody{} },
		func() any { return &technicianBody{} },
		func() any { return &reasonBody{} },
		func() any { return &loginBody{} },
		func() any { return &totpBody{} },
		func() any { return &ssoConfigBody{} },
		func() any { return &ssoIDBody{} },
		func() any { return &passwordBody{} },
		func() any { return &sessionBody{} },
		func() any { return &gdprExportBody{} },
		func() any { return &gdprEraseBody{} },
		func() any { return &replayBody{} },
		func() any { return &relayAuthorizeBody{} },
		func() any { return &relayClosedBody{} },
		func() any { return &retentionBody{} },
		func() any { return &webhooks.NewSubscription{} },
		func() any { return &webhooks.SubscriptionChange{} },
		func() any { p := domain.DefaultGroupPolicy(); return &p },
	}
}

// pathID returns the path value name of r, an id of the documented
// character set (service.ValidID), or an error of code invalid: a NUL or
// invalid UTF-8 in a path never reaches a query.
func pathID(r *http.Request, name string) (string, error) {
	v := r.PathValue(name)
	if err := service.CheckID("the id in the path", v); err != nil {
		return "", err
	}
	return v, nil
}

// maxContentType bounds a recording's Content-Type, which is stored with
// it.
const maxContentType = 128

// checkContentType refuses a recording's Content-Type unless it is a
// media type of printable ASCII of at most maxContentType characters: net/http
// lets other bytes through in header values.
func checkContentType(v string) error {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return domain.Errorf(domain.CodeInvalid, "Content-Type: want printable ASCII")
		}
	}
	if v == "" || len(v) > maxContentType {
		return domain.Errorf(domain.CodeInvalid, "Content-Type: want a media type of 1 to %d characters", maxContentType)
	}
	if _, _, err := mime.ParseMediaType(v); err != nil {
		return domain.Errorf(domain.CodeInvalid, "Content-Type: not a media type")
	}
	return nil
}
