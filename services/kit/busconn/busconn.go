// Package busconn connects a daemon to the internal NATS bus with its own
// credentials. The connection retries forever: the bus may restart under a
// running daemon and every daemon must ride through that.
package busconn

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
)

// Creds is the content of DIR/run/bus/<daemon>.creds (mode 0600).
type Creds struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// ReadCreds loads a credentials file.
func ReadCreds(path string) (Creds, error) {
	var c Creds
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("bus credentials: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("bus credentials %s: %w", path, err)
	}
	if c.User == "" || c.Password == "" {
		return c, fmt.Errorf("bus credentials %s: user or password empty", path)
	}
	return c, nil
}

// InboxPrefix is the reply-subject prefix of a user's requests; the bus lets
// each user subscribe only to its own.
func InboxPrefix(user string) string { return "_INBOX_" + user }

// Connect dials url as the user of credsFile.
func Connect(url, credsFile, name string, log *slog.Logger) (*nats.Conn, error) {
	c, err := ReadCreds(credsFile)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.UserInfo(c.User, c.Password),
		nats.CustomInboxPrefix(InboxPrefix(c.User)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(200*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("bus disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("bus reconnected", "url", nc.ConnectedUrl()) }),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			log.Error("bus error", "subject", subj, "err", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to bus %s: %w", url, err)
	}
	return nc, nil
}
