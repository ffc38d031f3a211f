// Package sdnotify speaks systemd's notify protocol (sd_notify(3)) without
// libsystemd: one datagram per state change to $NOTIFY_SOCKET.
package sdnotify

import (
	"net"
	"os"
	"strconv"
	"time"
)

// Notify sends state (e.g. "READY=1") to $NOTIFY_SOCKET. It returns false,
// nil when the variable is unset (not run by systemd).
func Notify(state string) (bool, error) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return false, nil
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return false, err
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, err
	}
	return true, nil
}

// Ready tells systemd the daemon is serving.
func Ready() error { _, err := Notify("READY=1\nMAINPID=" + strconv.Itoa(os.Getpid())); return err }

// Stopping tells systemd the daemon is shutting down.
func Stopping() error { _, err := Notify("STOPPING=1"); return err }

// WatchdogInterval returns half of $WATCHDOG_USEC (the interval at which to
// ping), or 0 when no watchdog was asked for or it is meant for another pid.
func WatchdogInterval() time.Duration {
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(us) * time.Microsecond / 2
}

// Watchdog pings systemd's watchdog every interval until stop is closed.
func Watchdog(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			Notify("WATCHDOG=1")
		}
	}
}
