package domain

import (
	"errors"
	"fmt"
)

// Error codes carried by *Error. The api package maps them to HTTP statuses
// and GraphQL extensions; nothing else does.
const (
	CodeInvalid           = "invalid"
	CodeNotFound          = "not_found"
	CodeConflict          = "conflict"
	CodeConsentRequired   = "consent_required"
	CodePermissionDenied  = "permission_denied"
	CodeSessionClosed     = "session_closed"
	CodeLockedOut         = "locked_out"
	CodeIPNotAllowed      = "ip_not_allowed"
	CodeUnauthenticated   = "unauthenticated"
	CodeForbidden         = "forbidden"
	CodeSubjectErased     = "subject_erased"
	CodePasswordChange    = "password_change_required"
	CodeSecondFactor      = "second_factor_required"
	CodeWeakPassword      = "weak_password"
	CodeRecordingRequired = "recording_required"
	CodeDisabled          = "disabled"
	CodeRateLimited       = "rate_limited"
	CodeInternal          = "internal"
	// CodeAddressRefused: a URL Vigil would have to call (a webhook's)
	// points at an address its SSRF rules refuse.
	CodeAddressRefused = "address_refused"
	// CodeUnavailable: a store (the database) cannot be reached just now;
	// the same request may succeed when retried a little later.
	CodeUnavailable = "unavailable"
)

// Error is the coded error that crosses the boundary. Message is safe to show
// to the caller; it never holds secrets or personal data of other subjects.
type Error struct {
	Code    string
	Message string
	// Err, when set, is a sentinel the error also matches with errors.Is.
	Err error
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap returns the sentinel behind e, if any.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, CodeInternal
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	for _, s := range sentinelCodes {
		if errors.Is(err, s.err) {
			return s.code
		}
	}
	return CodeInternal
}

// ErrorMessage returns the caller-safe message of err: the message of its
// *Error, or "internal error" for anything unexpected.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	for _, s := range sentinelCodes {
		if errors.Is(err, s.err) {
			return s.err.Error()
		}
	}
	return "internal error"
}

// Sentinels for conditions callers branch on. Each matches errors.Is and maps
// to the code of the same meaning.
var (
	// ErrConcurrency: the stream's version is not the one the caller expected.
	ErrConcurrency = errors.New("stream version conflict")
	// ErrConflict: a write clashes with what is stored (such as an event id
	// reused for different events).
	ErrConflict = errors.New("conflict")
	// ErrNotFound: the thing asked for does not exist (in the caller's tenant).
	ErrNotFound = errors.New("not found")
	// ErrSessionClosed: the session is closed; nothing but recording and
	// compliance events may follow.
	ErrSessionClosed = errors.New("session closed")
	// ErrConsentRequired: the customer has not consented to the action.
	ErrConsentRequired = errors.New("customer consent required")
	// ErrPermissionDenied: the technician's group does not grant the action.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrLockedOut: the technician is locked out after failed logins.
	ErrLockedOut = errors.New("technician locked out")
	// ErrSubjectErased: the data subject's key was destroyed.
	ErrSubjectErased = errors.New("subject erased")
	// ErrRecordingRequired: the group forces recording and none is running.
	ErrRecordingRequired = errors.New("session recording required")
	// ErrForbidden: the actor may not do this here, such as a technician
	// acting in a session another technician holds.
	ErrForbidden = errors.New("forbidden")
	// ErrIPNotAllowed: the address is outside the group's IP allowlist.
	ErrIPNotAllowed = errors.New("ip address not allowed")
	// ErrDisabled: the technician is disabled.
	ErrDisabled = errors.New("technician disabled")
	// ErrUnauthenticated: the credentials or second factor were wrong.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrWeakPassword: the password does not meet the group's policy.
	ErrWeakPassword = errors.New("password does not meet the policy")
	// ErrUnavailable: the database (or another store) cannot be reached
	// just now: the connection was refused or lost, the server is shutting
	// down or starting up, or no connection came free in time. Adapters
	// wrap their driver's error with it; a retry a little later is the
	// answer.
	ErrUnavailable = errors.New("the service is unavailable for a moment; retry shortly")
)

// coded returns an *Error of code with a formatted message that also
// matches sentinel with errors.Is.
func coded(code string, sentinel error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: sentinel}
}

type sentinelCode struct {
	err  error
	code string
}

var sentinelCodes = []sentinelCode{
	{ErrConcurrency, CodeConflict},
	{ErrConflict, CodeConflict},
	{ErrNotFound, CodeNotFound},
	{ErrSessionClosed, CodeSessionClosed},
	{ErrConsentRequired, CodeConsentRequired},
	{ErrPermissionDenied, CodePermissionDenied},
	{ErrLockedOut, CodeLockedOut},
	{ErrSubjectErased, CodeSubjectErased},
	{ErrRecordingRequired, CodeRecordingRequired},
	{ErrForbidden, CodeForbidden},
	{ErrIPNotAllowed, CodeIPNotAllowed},
	{ErrDisabled, CodeDisabled},
	{ErrUnauthenticated, CodeUnauthenticated},
	{ErrWeakPassword, CodeWeakPassword},
	{ErrUnavailable, CodeUnavailable},
}
