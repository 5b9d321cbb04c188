package service

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"golang.org/x/crypto/scrypt"
)

// scrypt parameters: N = 2^15, r = 8, p = 1 (the package's recommendation
// for interactive logins), 32-byte keys. They are stored with each hash so
// that they can be raised without invalidating old hashes.
const (
	scryptN      = 1 << 15
	scryptR      = 8
	scryptP      = 1
	scryptKeyLen = 32
	// SaltLength is the number of characters of a password salt: 24
	// characters drawn from a CSPRNG, as the whitepaper specifies.
	SaltLength = 24
)

const saltAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./"

// HashPassword returns the scrypt hash of password with a new random salt,
// in the form "scrypt$N$r$p$salt$base64(key)".
func HashPassword(password string) (string, error) {
	salt, err := randomString(saltAlphabet, SaltLength)
	if err != nil {
		return "", err
	}
	key, err := scrypt.Key([]byte(password), []byte(salt), scryptN, scryptR, scryptP, scryptKeyLen)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return fmt.Sprintf("scrypt$%d$%d$%d$%s$%s", scryptN, scryptR, scryptP, salt, base64.RawStdEncoding.EncodeToString(key)), nil
}

// CheckPassword reports whether password matches hash, in constant time
// with respect to the key. A malformed hash never matches.
func CheckPassword(hash, password string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "scrypt" {
		return false
	}
	n, err1 := strconv.Atoi(parts[1])
	r, err2 := strconv.Atoi(parts[2])
	p, err3 := strconv.Atoi(parts[3])
	want, err4 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || n > 1<<20 || r > 32 || p > 16 {
		return false
	}
	got, err := scrypt.Key([]byte(password), []byte(parts[4]), n, r, p, len(want))
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is checked against when the e-mail is unknown, so that an
// unknown address costs the same time as a wrong password: a hash of the
// same parameters as every new one, made on first use (not at start: it
// costs a password hash).
var dummyHash = sync.OnceValue(func() string {
	h, err := HashPassword("not a password: timing equaliser")
	if err != nil {
		panic(err)
	}
	return h
})

// PasswordStrength scores password from 0 (very weak) to 4 (strong) by its
// length and the character classes it mixes; a weak_password error reports
// it so that the console can show a meter.
func PasswordStrength(password string) int {
	var upper, lower, digit, other bool
	n := 0
	for _, r := range password {
		n++
		switch {
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsLower(r):
			lower = true
		case unicode.IsDigit(r):
			digit = true
		default:
			other = true
		}
	}
	classes := 0
	for _, b := range []bool{upper, lower, digit, other} {
		if b {
			classes++
		}
	}
	score := 0
	switch {
	case n >= 16:
		score = 2
	case n >= 12:
		score = 1
	}
	if classes >= 3 {
		score++
	}
	if classes == 4 || n >= 20 {
		score++
	}
	if n < 8 {
		score = 0
	}
	return min(score, 4)
}

// Secret prefixes of the two kinds of bearer credential.
const (
	APIKeyPrefix = "vk"
	TokenPrefix  = "vt"
)

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newCredential returns a new bearer credential "<prefix>_<id>_<secret>":
// a 10-byte id (base32) that names the stored row, and a 32-byte secret
// whose SHA-256 is all that is stored.
func newCredential(prefix string) (id, secret, full string, err error) {
	idb := make([]byte, 10)
	sb := make([]byte, 32)
	if _, err := rand.Read(idb); err != nil {
		return "", "", "", err
	}
	if _, err := rand.Read(sb); err != nil {
		return "", "", "", err
	}
	id, secret = b32.EncodeToString(idb), b32.EncodeToString(sb)
	return id, secret, prefix + "_" + id + "_" + secret, nil
}

// parseCredential splits a bearer credential into its prefix, id and
// secret; ok is false for anything not of that form.
func parseCredential(s string) (prefix, id, secret string, ok bool) {
	parts := strings.Split(s, "_")
	if len(parts) != 3 || (parts[0] != APIKeyPrefix && parts[0] != TokenPrefix) || len(parts[1]) != 16 || len(parts[2]) != 52 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// hashSecret returns SHA-256 of a credential secret. Secrets are 256
// random bits, so a fast hash is enough (unlike passwords).
func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func secretMatches(stored []byte, secret string) bool {
	return subtle.ConstantTimeCompare(stored, hashSecret(secret)) == 1
}

func randomString(alphabet string, n int) (string, error) {
	// Rejection sampling keeps every character equally likely.
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, n*2)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}

// randomDigits returns n random decimal digits.
func randomDigits(n int) (string, error) { return randomString("0123456789", n) }
