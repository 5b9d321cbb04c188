package gql

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Cursors are opaque to clients: base64url of a version tag, the list they
// belong to and the keyset position. They hold no personal data.

func encodeSessionCursor(c SessionCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte("s1|" + strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "|" + c.ID))
}

func decodeSessionCursor(s string) (*SessionCursor, error) {
	if s == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errBadCursor
	}
	parts := strings.SplitN(string(raw), "|", 3)
	if len(parts) != 3 || parts[0] != "s1" || parts[2] == "" {
		return nil, errBadCursor
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return nil, errBadCursor
	}
	return &SessionCursor{CreatedAt: time.UnixMicro(us).UTC(), ID: parts[2]}, nil
}

func encodeLogCursor(list string, c LogCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte("l1|" + list + "|" +
		strconv.FormatInt(c.OccurredAt.UnixMicro(), 10) + "|" + strconv.FormatInt(c.Position, 10)))
}

func decodeLogCursor(list, s string) (*LogCursor, error) {
	if s == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errBadCursor
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 4 || parts[0] != "l1" || parts[1] != list {
		return nil, errBadCursor
	}
	us, err1 := strconv.ParseInt(parts[2], 10, 64)
	pos, err2 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, errBadCursor
	}
	return &LogCursor{OccurredAt: time.UnixMicro(us).UTC(), Position: pos}, nil
}

func encodeRecordingCursor(c RecordingCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte("r1|" + strconv.FormatInt(c.At.UnixMicro(), 10) + "|" + c.SessionID + "|" + c.RecordingID))
}

func decodeRecordingCursor(s string) (*RecordingCursor, error) {
	if s == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errBadCursor
	}
	// Session and recording ids hold no '|' (UUIDs; recording ids are
	// letters, digits, '-', '_' and '.').
	parts := strings.Split(string(raw), "|")
	if len(parts) != 4 || parts[0] != "r1" || parts[2] == "" || parts[3] == "" {
		return nil, errBadCursor
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return nil, errBadCursor
	}
	return &RecordingCursor{At: time.UnixMicro(us).UTC(), SessionID: parts[2], RecordingID: parts[3]}, nil
}

var errBadCursor = errInvalid("after is not a cursor of this list")
