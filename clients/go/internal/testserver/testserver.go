// Package testserver runs the real metering server as a child process for
// tests: `metering serve` on a loopback port with a SQLite database in a
// temporary directory and the repository's test price file.
//
// The binary is $METERING_BIN, default <repo>/.venv/bin/metering (made by
// ./scripts/bootstrap or ./scripts/test at the repository root).
package testserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ReadyPrefix starts the stdout line the server prints once it listens.
const ReadyPrefix = "metering listening on "

// Server is one running (or stopped) server. Restart keeps its port and
// database.
type Server struct {
	// Addr is host:port, as the server reported it.
	Addr string
	// Dir holds the database (m.db) and the server's logs.
	Dir string
	// DatabaseURL is sqlite:///<Dir>/m.db.
	DatabaseURL string

	t      testing.TB
	bin    string
	prices string
	port   int
	starts int

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{}
}

// RepoRoot is the repository root (four levels above this file).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "..", ".."))
}

// Binary returns the server binary to run, or an error saying how to get one.
func Binary() (string, error) {
	bin := os.Getenv("METERING_BIN")
	if bin == "" {
		bin = filepath.Join(RepoRoot(), ".venv", "bin", "metering")
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		return "", fmt.Errorf("metering server binary %q not found: run ./scripts/bootstrap (or ./scripts/test) at the repository root, or set METERING_BIN", bin)
	}
	return bin, nil
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start starts a server on a fixed free port (so that it can be restarted
// on the same one) and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &Server{
		Dir:         dir,
		DatabaseURL: "sqlite:///" + filepath.Join(dir, "m.db"),
		t:           t,
		bin:         bin,
		prices:      filepath.Join(RepoRoot(), "tests", "data", "prices.json"),
		port:        FreePort(t),
	}
	t.Cleanup(s.Stop)
	s.Restart()
	return s
}

// Restart starts the server again on the same port and database (after
// Kill or Stop), failing the test if it cannot. Call it from the test's
// goroutine; elsewhere use TryRestart.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.TryRestart(); err != nil {
		s.t.Fatal(err)
	}
}

// TryRestart is Restart returning the error. A port still held for a
// moment is retried.
func (s *Server) TryRestart() error {
	var err error
	for try := 0; try < 10; try++ {
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	return err
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("testserver: already running")
	}
	s.starts++
	logPath := filepath.Join(s.Dir, fmt.Sprintf("server-%d.log", s.starts))
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	listen := "127.0.0.1:" + strconv.Itoa(s.port)
	cmd := exec.Command(s.bin, "serve", "--listen", listen,
		"--database-url", s.DatabaseURL, "--prices-file", s.prices)
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), "METERING_SHUTDOWN_GRACE_SECONDS=2")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	ready := make(chan string, 1)
	var out bytes.Buffer
	var outMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			outMu.Lock()
			out.WriteString(line + "\n")
			outMu.Unlock()
			if rest, ok := strings.CutPrefix(line, ReadyPrefix); ok {
				select {
				case ready <- strings.Fields(rest)[0]:
				default:
				}
			}
		}
	}()
	exit := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exit)
	}()
	fail := func(why string) error {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exit
		logs, _ := os.ReadFile(logPath)
		outMu.Lock()
		defer outMu.Unlock()
		return fmt.Errorf("testserver: %s\nstdout:\n%s\nstderr (last 3000 bytes):\n%s", why, out.String(), tail(logs, 3000))
	}
	select {
	case addr := <-ready:
		s.Addr, s.cmd, s.exit = addr, cmd, exit
		return nil
	case <-exit:
		return fail("server exited before listening")
	case <-time.After(30 * time.Second):
		return fail("server did not print its listening line within 30s")
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Pid is the server's process id (0 when not running).
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Signal sends sig to the server (e.g. SIGSTOP, SIGCONT). Safe to call
// from any goroutine.
func (s *Server) Signal(sig syscall.Signal) error {
	pid := s.Pid()
	if pid == 0 {
		return errors.New("testserver: not running")
	}
	return syscall.Kill(pid, sig)
}

// Kill kills the server with SIGKILL (a crash) and waits for it to exit.
func (s *Server) Kill() { s.stop(syscall.SIGKILL, 0) }

// Terminate sends SIGTERM (a graceful shutdown) and waits for the exit,
// killing the process if it is not gone after 10s.
func (s *Server) Terminate() { s.stop(syscall.SIGTERM, 10*time.Second) }

// Stop is Terminate without failing when the server is not running; Start
// registers it as a test cleanup.
func (s *Server) Stop() { s.stop(syscall.SIGTERM, 5*time.Second) }

func (s *Server) stop(sig syscall.Signal, grace time.Duration) {
	s.mu.Lock()
	cmd, exit := s.cmd, s.exit
	s.cmd, s.exit = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGCONT) // in case a test left it stopped
	_ = syscall.Kill(pid, sig)
	select {
	case <-exit:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // its process group: nothing outlives the test
	<-exit
}
