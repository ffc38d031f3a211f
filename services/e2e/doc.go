// Package e2e holds end-to-end tests of the whole suite: the real ggd
// supervisor and daemons as processes, driven by the real ggctl binary.
package e2e
