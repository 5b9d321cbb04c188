// Package keys loads Vigil's key material from the environment and files:
// the master key that wraps every subject data key, and the Ed25519 key
// that signs checkpoints. When asked to (only `vigil serve` outside
// production does), it generates missing keys into the data directory, so
// that a development server runs with no set-up.
package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
)

// Config says where the keys are.
type Config struct {
	// MasterKey is the base64 master key (VIGIL_MASTER_KEY); it wins over
	// MasterKeyFile.
	MasterKey string
	// MasterKeyFile holds the base64 master key (VIGIL_MASTER_KEY_FILE).
	MasterKeyFile string
	// PreviousMasterKeys are base64 master keys still accepted for
	// unwrapping, during a rotation (VIGIL_MASTER_KEY_PREVIOUS, comma
	// separated).
	PreviousMasterKeys []string
	// SigningKeyFile holds the note-format Ed25519 private key
	// (VIGIL_SIGNING_KEY_FILE); its verifier key is kept beside it as
	// SigningKeyFile + ".pub".
	SigningKeyFile string
	// DataDir holds the keys when none are configured, and receives
	// generated ones.
	DataDir string
	// Generate creates missing keys in DataDir. Only `vigil serve` in
	// development sets it: any other command run from another folder
	// would sign the log with keys nobody else holds. Without it, a
	// missing key is an error naming the folder looked in.
	Generate bool
	// Production refuses to generate keys, whatever Generate says.
	Production bool
	// SignerName names the checkpoint signer (default "vigil.local").
	SignerName string
}

// Material is the loaded key material.
type Material struct {
	Ring        *ledger.Keyring
	Signer      note.Signer
	Verifier    note.Verifier
	VerifierKey string // the note-format verifier key, for auditors
	// MasterKeyPath is the file the master key came from, "" for the
	// environment.
	MasterKeyPath string
	// Generated lists the files this call created.
	Generated []string
}

// DefaultMasterKeyFile and DefaultSigningKeyFile are the names used inside
// the data directory when no key is configured.
const (
	DefaultMasterKeyFile  = "master.key"
	DefaultSigningKeyFile = "signing.key"
	// PendingSuffix marks a master key being rotated in; it is loaded as an
	// extra unwrapping key so that a rotation interrupted after its commit
	// loses nothing.
	PendingSuffix = ".new"
)

// Load reads (or, with Generate outside production, generates) the key
// material. A missing key is an error wrapping ErrNoKeys.
func Load(cfg Config) (Material, error) {
	var m Material
	if cfg.SignerName == "" {
		cfg.SignerName = "vigil.local"
	}
	var current ledger.MasterKey
	var older []ledger.MasterKey
	switch {
	case cfg.MasterKey != "":
		k, err := ParseMasterKey(cfg.MasterKey)
		if err != nil {
			return m, fmt.Errorf("VIGIL_MASTER_KEY: %w", err)
		}
		current = k
	default:
		path := cfg.MasterKeyFile
		if path == "" {
			if cfg.Production {
				return m, errors.New("no master key: set VIGIL_MASTER_KEY or VIGIL_MASTER_KEY_FILE (VIGIL_ENV=production never generates keys)")
			}
			path = filepath.Join(cfg.DataDir, DefaultMasterKeyFile)
			if !cfg.Generate {
				if err := mustExist(path, cfg.DataDir, "master key", "VIGIL_MASTER_KEY_FILE"); err != nil {
					return m, err
				}
			}
			created, err := generateMasterKeyFile(path)
			if err != nil {
				return m, err
			}
			if created {
				m.Generated = append(m.Generated, path)
			}
		}
		k, err := ReadMasterKeyFile(path)
		if err != nil {
			return m, err
		}
		current = k
		m.MasterKeyPath = path
		if p, err := ReadMasterKeyFile(path + PendingSuffix); err == nil {
			older = append(older, p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return m, err
		}
	}
	for i, s := range cfg.PreviousMasterKeys {
		if strings.TrimSpace(s) == "" {
			continue
		}
		k, err := ParseMasterKey(s)
		if err != nil {
			return m, fmt.Errorf("VIGIL_MASTER_KEY_PREVIOUS[%d]: %w", i, err)
		}
		older = append(older, k)
	}
	m.Ring = ledger.NewKeyring(current, older...)

	path := cfg.SigningKeyFile
	if path == "" {
		if cfg.Production {
			return m, errors.New("no signing key: set VIGIL_SIGNING_KEY_FILE (VIGIL_ENV=production never generates keys)")
		}
		path = filepath.Join(cfg.DataDir, DefaultSigningKeyFile)
		if !cfg.Generate {
			if err := mustExist(path, cfg.DataDir, "checkpoint signing key", "VIGIL_SIGNING_KEY_FILE"); err != nil {
				return m, err
			}
		}
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if err := GenerateSigningKey(path, cfg.SignerName); err != nil {
				return m, err
			}
			m.Generated = append(m.Generated, path, path+".pub")
		}
	}
	signer, vkey, err := ReadSigningKey(path)
	if err != nil {
		return m, err
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return m, fmt.Errorf("verifier key: %w", err)
	}
	if _, err := os.Stat(path + ".pub"); errors.Is(err, os.ErrNotExist) {
		if err := writeFile(path+".pub", vkey+"\n", 0o644); err == nil {
			m.Generated = append(m.Generated, path+".pub")
		}
	}
	m.Signer, m.Verifier, m.VerifierKey = signer, verifier, vkey
	return m, nil
}

// ErrNoKeys is returned (wrapped, with the folder looked in) by Load
// when a key is missing and Generate is off.
var ErrNoKeys = errors.New("no keys")

// mustExist returns an error wrapping ErrNoKeys, naming the absolute
// folder, when the key file at path does not exist.
func mustExist(path, dir, what, setting string) error {
	_, err := os.Stat(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return nil // other errors surface when the file is read
	}
	abs, aerr := filepath.Abs(dir)
	if aerr != nil {
		abs = dir
	}
	return fmt.Errorf("%w: no %s in %s (looked for %s). Only 'vigil serve' in development generates keys; "+
		"run this command from the folder 'vigil serve' runs in, or set VIGIL_DATA_DIR to the folder that holds the keys, "+
		"or set %s", ErrNoKeys, what, abs, filepath.Base(path), setting)
}

// ParseMasterKey decodes a base64 (standard or URL, padded or not) master
// key of 32 bytes.
func ParseMasterKey(s string) (ledger.MasterKey, error) {
	s = strings.TrimSpace(s)
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return ledger.MasterKey{}, errors.New("master key is not base64")
	}
	return ledger.NewMasterKey(raw)
}

// ReadMasterKeyFile reads a base64 master key from path. A missing file
// gives an error matching os.ErrNotExist.
func ReadMasterKeyFile(path string) (ledger.MasterKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ledger.MasterKey{}, fmt.Errorf("master key: %w", err)
	}
	k, err := ParseMasterKey(string(b))
	if err != nil {
		return ledger.MasterKey{}, fmt.Errorf("master key %s: %w", path, err)
	}
	return k, nil
}

// NewMasterKeyString returns a new random master key in base64.
func NewMasterKeyString() (string, error) {
	raw := make([]byte, ledger.MasterKeySize)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(raw), nil
}

// GenerateMasterKeyFile writes a new random master key to path (mode 0600)
// unless the file exists; it reports whether it wrote one.
func GenerateMasterKeyFile(path string) (bool, error) { return generateMasterKeyFile(path) }

func generateMasterKeyFile(path string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	s, err := NewMasterKeyString()
	if err != nil {
		return false, err
	}
	if err := writeFile(path, s+"\n", 0o600); err != nil {
		return false, fmt.Errorf("write master key: %w", err)
	}
	return true, nil
}

// GenerateSigningKey writes a new Ed25519 note signing key to path (0600)
// and its verifier key to path.pub.
func GenerateSigningKey(path, name string) error {
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return fmt.Errorf("generate signing key: %w", err)
	}
	if err := writeFile(path, skey+"\n", 0o600); err != nil {
		return fmt.Errorf("write signing key: %w", err)
	}
	return writeFile(path+".pub", vkey+"\n", 0o644)
}

// ReadSigningKey reads a note-format Ed25519 private key from path and
// returns its signer and its verifier key, derived from the private key so
// that the two can never disagree.
func ReadSigningKey(path string) (note.Signer, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("signing key: %w", err)
	}
	skey := strings.TrimSpace(string(b))
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, "", fmt.Errorf("signing key %s: %w", path, err)
	}
	vkey, err := VerifierKey(skey)
	if err != nil {
		return nil, "", fmt.Errorf("signing key %s: %w", path, err)
	}
	return signer, vkey, nil
}

// VerifierKey derives the note-format verifier key of an Ed25519 note
// private key ("PRIVATE+KEY+name+hash+base64").
func VerifierKey(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("not a note private key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("not an Ed25519 note private key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}

func writeFile(path, content string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
