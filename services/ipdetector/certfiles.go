package ipdetector

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// certmgr replaces its files by rename (atomicfile), so a changed file is
// a changed identity or modification time. Both files are re-read at a
// handshake only when one of them changed: a renewal (certmgr rotates the
// MQTT server certificate on a timer and when connectivity changes) takes
// effect at the next handshake, without a restart or a bus subscription.

// stamp identifies one version of a file.
type stamp struct {
	info os.FileInfo
}

func (a stamp) same(b os.FileInfo) bool {
	return a.info != nil && b != nil && os.SameFile(a.info, b) &&
		a.info.ModTime().Equal(b.ModTime()) && a.info.Size() == b.Size()
}

// reloadingPair is the discovery server's certificate: certmgr's MQTT
// server certificate and key.
type reloadingPair struct {
	certFile, keyFile string
	log               *slog.Logger

	mu       sync.Mutex
	certStat stamp
	keyStat  stamp
	pair     *tls.Certificate
}

// get is tls.Config.GetCertificate.
func (p *reloadingPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ci, cerr := os.Stat(p.certFile)
	ki, kerr := os.Stat(p.keyFile)
	if cerr == nil && kerr == nil && p.certStat.same(ci) && p.keyStat.same(ki) {
		return p.pair, nil
	}
	pair, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err == nil && cerr == nil && kerr == nil {
		p.certStat, p.keyStat, p.pair = stamp{ci}, stamp{ki}, &pair
		p.log.Info("discovery uses the MQTT server certificate", "serial", fmt.Sprintf("%x", pair.Leaf.SerialNumber),
			"expires", pair.Leaf.NotAfter)
		return p.pair, nil
	}
	err = errors.Join(err, cerr, kerr)
	// Between certmgr's two renames the files may not pair; the stamps
	// stay as they were, so the next handshake reads them again.
	if p.pair != nil {
		p.log.Debug("server certificate files not usable yet; keeping the previous pair", "err", err)
		return p.pair, nil
	}
	p.log.Warn("no server certificate for discovery (is certmgr running?)", "err", err)
	return nil, fmt.Errorf("server certificate: %w", err)
}

// cachedFile is a small file read again only when it changed.
type cachedFile struct {
	path string

	mu   sync.Mutex
	stat stamp
	data []byte
}

// maxCachedFile bounds what cachedFile reads: a CA certificate in PEM.
const maxCachedFile = 64 << 10

func (f *cachedFile) read() ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.path)
	if err != nil {
		return nil, err
	}
	if f.stat.same(st) {
		return f.data, nil
	}
	if st.Size() > maxCachedFile {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", f.path, st.Size(), maxCachedFile)
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return nil, err
	}
	f.stat, f.data = stamp{st}, b
	return b, nil
}
