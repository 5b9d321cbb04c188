package domain

import (
	"time"
	"unicode"
	"unicode/utf8"
)

// Seconds is a duration in whole seconds, the unit durations take in the
// log so that readers outside Go see plain numbers.
type Seconds int64

// Duration returns s as a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(s) * time.Second }

// SecondsOf returns d rounded down to whole seconds.
func SecondsOf(d time.Duration) Seconds { return Seconds(d / time.Second) }

// PasswordPolicy is a group's password rule set.
type PasswordPolicy struct {
	// MinLength is the minimum number of characters (runes).
	MinLength int `json:"min_length"`
	// RequireUpper demands an upper-case letter.
	RequireUpper bool `json:"require_upper"`
	// RequireLower demands a lower-case letter.
	RequireLower bool `json:"require_lower"`
	// RequireDigit demands a digit.
	RequireDigit bool `json:"require_digit"`
	// RequireSymbol demands a punctuation mark, symbol or space.
	RequireSymbol bool `json:"require_symbol"`
	// MaxAge is the password lifetime; 0 means passwords do not expire.
	MaxAge Seconds `json:"max_age_s"`
}

// Check reports whether password meets p. It returns an error of code
// weak_password (matching ErrWeakPassword) naming the first unmet rule; the
// password itself never appears in the message.
func (p PasswordPolicy) Check(password string) error {
	if !utf8.ValidString(password) {
		return coded(CodeWeakPassword, ErrWeakPassword, "password is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(password); n < p.MinLength {
		return coded(CodeWeakPassword, ErrWeakPassword, "password has %d characters, the policy wants at least %d", n, p.MinLength)
	}
	var upper, lower, digit, symbol bool
	for _, r := range password {
		switch {
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsLower(r):
			lower = true
		case unicode.IsDigit(r):
			digit = true
		case unicode.IsPunct(r) || unicode.IsSymbol(r) || unicode.IsSpace(r):
			symbol = true
		}
	}
	switch {
	case p.RequireUpper && !upper:
		return coded(CodeWeakPassword, ErrWeakPassword, "password needs an upper-case letter")
	case p.RequireLower && !lower:
		return coded(CodeWeakPassword, ErrWeakPassword, "password needs a lower-case letter")
	case p.RequireDigit && !digit:
		return coded(CodeWeakPassword, ErrWeakPassword, "password needs a digit")
	case p.RequireSymbol && !symbol:
		return coded(CodeWeakPassword, ErrWeakPassword, "password needs a symbol")
	}
	return nil
}

// GroupPolicy is the behaviour an administrator sets for a technician group
// beyond its permissions.
type GroupPolicy struct {
	// OneTimePromptAllowed lets technicians ask for consent to all actions at
	// once; they also need the one_time_prompt permission.
	OneTimePromptAllowed bool `json:"one_time_prompt_allowed"`
	// ForcedRecording refuses remote control and desktop view until a
	// session recording runs.
	ForcedRecording bool `json:"forced_recording"`
	// StoreChat keeps chat messages in the log; when false they are not
	// recorded at all.
	StoreChat bool `json:"store_chat"`
	// ChatInCRM includes the chat log in the data posted to CRM webhooks.
	ChatInCRM bool `json:"chat_in_crm"`
	// StoreCustomerIP keeps the customer's IP address; when false it is
	// left out of every event.
	StoreCustomerIP bool `json:"store_customer_ip"`
	// SessionInactivityTimeout closes an idle session; 0 disables it.
	SessionInactivityTimeout Seconds `json:"session_inactivity_timeout_s"`
	// ConsoleInactivityTimeout logs an idle technician out; 0 disables it.
	ConsoleInactivityTimeout Seconds `json:"console_inactivity_timeout_s"`
	// LockoutThreshold is the number of consecutive failed logins that
	// locks a technician out.
	LockoutThreshold int `json:"lockout_threshold"`
	// LockoutDuration is how long a lockout lasts unless an admin unlocks.
	LockoutDuration Seconds `json:"lockout_duration_s"`
	// Password is the password policy.
	Password PasswordPolicy `json:"password"`
	// RequireSecondFactor forces technicians to enrol and use TOTP.
	RequireSecondFactor bool `json:"require_second_factor"`
	// SSOOnly refuses password logins: members log in through the tenant's
	// identity provider (SAML) only.
	SSOOnly bool `json:"sso_only,omitempty"`
}

// Default policy values.
const (
	DefaultLockoutThreshold         = 5
	DefaultLockoutDuration          = 15 * time.Minute
	DefaultPasswordMinLength        = 12
	DefaultSessionInactivityTimeout = 30 * time.Minute
	DefaultConsoleInactivityTimeout = 60 * time.Minute
)

// DefaultGroupPolicy returns the policy of a group whose administrator
// chose nothing: chat and customer IP stored, no one-time prompt, no forced
// recording, lockout after 5 failures for 15 minutes, passwords of at least
// 12 characters with upper, lower and digit.
func DefaultGroupPolicy() GroupPolicy {
	return GroupPolicy{
		StoreChat:                true,
		ChatInCRM:                true,
		StoreCustomerIP:          true,
		SessionInactivityTimeout: SecondsOf(DefaultSessionInactivityTimeout),
		ConsoleInactivityTimeout: SecondsOf(DefaultConsoleInactivityTimeout),
		LockoutThreshold:         DefaultLockoutThreshold,
		LockoutDuration:          SecondsOf(DefaultLockoutDuration),
		Password: PasswordPolicy{
			MinLength:    DefaultPasswordMinLength,
			RequireUpper: true,
			RequireLower: true,
			RequireDigit: true,
		},
	}
}

// Validate reports whether p is a policy the domain accepts, with an error
// of code invalid otherwise.
func (p GroupPolicy) Validate() error {
	switch {
	case p.SessionInactivityTimeout < 0 || p.ConsoleInactivityTimeout < 0:
		return Errorf(CodeInvalid, "inactivity timeouts must not be negative")
	case p.LockoutThreshold < 1 || p.LockoutThreshold > 100:
		return Errorf(CodeInvalid, "lockout threshold %d: want 1 to 100", p.LockoutThreshold)
	case p.LockoutDuration < 1:
		return Errorf(CodeInvalid, "lockout duration must be at least one second")
	case p.Password.MinLength < 8 || p.Password.MinLength > 256:
		return Errorf(CodeInvalid, "password minimum length %d: want 8 to 256", p.Password.MinLength)
	case p.Password.MaxAge < 0:
		return Errorf(CodeInvalid, "password max age must not be negative")
	}
	return nil
}
