package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
)

// Sign returns the webhook-signature header value of a message: for every
// secret, "v1," and the base64 HMAC-SHA256 of "id.timestamp.body" under
// the secret's bytes (the base64 part after "whsec_"), separated by
// spaces, as Standard Webhooks specifies. Secrets that do not decode are
// skipped.
func Sign(id string, timestamp int64, body []byte, secrets ...string) string {
	var sigs []string
	for _, s := range secrets {
		key, err := trimWhsec(s)
		if err != nil {
			continue
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id))
		m.Write([]byte{'.'})
		m.Write([]byte(strconv.FormatInt(timestamp, 10)))
		m.Write([]byte{'.'})
		m.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	return strings.Join(sigs, " ")
}
