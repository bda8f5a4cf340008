//! Inherited listening sockets: `examples/hello` under systemd's own
//! `systemd-socket-activate` (the tool systemd ships to try socket activation without a
//! unit), and started with `LISTEN_*` variables that announce something wrong.
//!
//! Unix only; the native build even when the others run under wine. Where
//! `systemd-socket-activate` is missing and `CI` is not set, its test is reported `ignored`
//! with the reason (`.ci/run` installs systemd).

pub fn trials() -> Vec<libtest_mimic::Trial> {
    #[cfg(unix)]
    return unix::trials();
    #[cfg(not(unix))]
    Vec::new()
}

#[cfg(unix)]
mod unix {
    use std::net::{SocketAddr, TcpListener};
    use std::process::Command;

    use libtest_mimic::{Completion, Trial};

    use crate::support::http::{connect_refused, get, Conn};
    use crate::support::{native_example, Proc, BOUND};

    pub fn trials() -> Vec<Trial> {
        let mut trials = vec![Trial::ignorable_test(
            crate::trial_name(
                module_path!(),
                "hello_serves_on_the_socket_systemd_activates_it_with",
            ),
            || match tool() {
                Some(tool) => {
                    hello_serves_on_the_socket_systemd_activates_it_with(&tool);
                    Ok(Completion::Completed)
                }
                None if std::env::var_os("CI").is_some() => Err(
                    "systemd-socket-activate is missing, and under CI this test must run \
                     (.ci/run installs systemd)"
                        .into(),
                ),
                None => Ok(Completion::ignored_with(
                    "systemd-socket-activate is not installed (apt-get install systemd)",
                )),
            },
        )];
        trials.extend(trials![
            a_restart_under_a_socket_unit_refuses_nothing_and_the_next_server_serves,
            a_descriptor_that_is_not_a_socket_is_an_error_and_nothing_is_bound,
            a_closed_descriptor_is_an_error,
            variables_meant_for_another_process_are_an_error,
            more_names_than_descriptors_is_an_error,
        ]);
        trials
    }

    fn tool() -> Option<String> {
        [
            "/usr/bin/systemd-socket-activate",
            "/bin/systemd-socket-activate",
        ]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .map(str::to_owned)
    }

    /// A port free a moment ago.
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// The tool binds the port and starts hello at the first connection, with the socket as
    /// descriptor 3: hello, told to bind that same address, takes the socket instead (the
    /// address is in use: binding would fail), and the connection that woke it, waiting in
    /// the backlog meanwhile, is served. SIGTERM then drains and exits 0.
    fn hello_serves_on_the_socket_systemd_activates_it_with(tool: &str) {
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let hello = native_example("hello");
        let mut cmd = Command::new(tool);
        cmd.arg(format!("--listen={addr}"))
            .arg("--fdname=web")
            .arg(hello.get_program())
            .args(["--addr", &addr.to_string(), "--delay-ms", "0"])
            .env("RUST_LOG", "info,tiny_http=off");
        let mut proc = Proc::spawn(cmd);
        proc.wait_line(&format!("Listening on {addr}"), BOUND);

        let mut conn = Conn::open(addr).unwrap();
        let response = conn.request("GET", "/").unwrap();
        assert_eq!(response.status, 200, "{}", proc.output());
        assert_eq!(response.text(), "Hello World");
        let line = proc.wait_line("inherited from", BOUND);
        assert!(
            line.contains(&format!(
                "listening on {addr} (web), inherited from socket activation"
            )) && line.contains(&format!("instead of binding {addr}")),
            "{line}"
        );
        drop(conn);

        proc.signal("TERM");
        let status = proc.wait_exit(BOUND);
        assert!(status.success(), "{status:?}\n{}", proc.output());
        assert!(connect_refused(addr));
    }

    /// systemd's `systemctl restart` with a socket unit, played by `socket_unit.py`: the
    /// socket stays open in the unit across the restart. The first hello drains a request in
    /// flight and exits 0 without sealing the socket (its filter would stay on the unit's
    /// socket and drop every new connection of the next server) nor waiting for connects to
    /// be refused (they never are); a request sent while no server runs waits in the
    /// backlog, and the second hello serves it, then new connections too.
    fn a_restart_under_a_socket_unit_refuses_nothing_and_the_next_server_serves() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/process/socket_unit.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(native_example("hello").get_program())
            .args(["--addr", "127.0.0.1:PORT", "--delay-ms", "500"])
            .env("RUST_LOG", "info,lameduck=debug,tiny_http=off");
        let mut unit = Proc::spawn(cmd);
        let line = unit.wait_line("socket-unit: listening on ", BOUND);
        let addr: SocketAddr = line.rsplit(' ').next().unwrap().parse().unwrap();

        unit.send_line("start");
        unit.wait_line("serving http://", BOUND);
        let mut in_flight = Conn::open(addr).unwrap();
        in_flight.send("GET", "/", &[], b"").unwrap();
        unit.wait_line("GET / from", BOUND);
        unit.send_line("stop");
        unit.wait_line("the socket stays open for the next server", BOUND);
        assert_eq!(
            in_flight.read_response(false).unwrap().text(),
            "Hello World"
        );
        unit.wait_line("socket-unit: exit 0", BOUND);

        // No server runs: the connection waits in the unit's socket.
        let mut waiting = Conn::open(addr).unwrap();
        waiting.send("GET", "/", &[], b"").unwrap();
        unit.send_line("start");
        assert_eq!(waiting.read_response(false).unwrap().text(), "Hello World");
        assert_eq!(get(addr, "/").unwrap().text(), "Hello World");
        unit.send_line("stop");
        unit.wait_lines("socket-unit: exit 0", 2, BOUND);
        let output = unit.output();
        assert!(!output.contains("WARN"), "{output}");
    }

    /// Runs hello through `sh`, which exports `LISTEN_PID` as its own process number (kept
    /// by `exec`) unless `env` says otherwise, with `env` and the redirection `fd3` for
    /// descriptor 3; returns its exit status and output.
    fn hello_with(env: &[(&str, &str)], fd3: &str) -> (std::process::ExitStatus, String) {
        let hello = native_example("hello");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "export LISTEN_PID=${{LISTEN_PID:-$$}}; exec \"$0\" \"$@\" {fd3}"
            ))
            .arg(hello.get_program())
            .args(["--addr", "127.0.0.1:0", "--delay-ms", "0"])
            .env("RUST_LOG", "info,tiny_http=off")
            .env_remove("LISTEN_PID");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = Proc::spawn(cmd);
        let status = proc.wait_exit(BOUND);
        (status, proc.output())
    }

    #[track_caller]
    fn fails_with(env: &[(&str, &str)], fd3: &str, message: &str) {
        let (status, output) = hello_with(env, fd3);
        assert_eq!(status.code(), Some(1), "{output}");
        assert!(
            output.contains(&format!("take the inherited socket: {message}")),
            "wanted {message:?} in:\n{output}"
        );
        assert!(!output.contains("listening on http://"), "{output}");
    }

    /// A file as descriptor 3: named, with what it is, and hello does not fall back to
    /// binding its address.
    fn a_descriptor_that_is_not_a_socket_is_an_error_and_nothing_is_bound() {
        fails_with(
            &[("LISTEN_FDS", "1")],
            "3</dev/null",
            "descriptor 3 is announced but is not a listening TCP socket: not a socket",
        );
    }

    fn a_closed_descriptor_is_an_error() {
        fails_with(
            &[("LISTEN_FDS", "1")],
            "3<&-",
            "descriptor 3 is announced but not open",
        );
    }

    fn variables_meant_for_another_process_are_an_error() {
        fails_with(
            &[("LISTEN_FDS", "1"), ("LISTEN_PID", "1")],
            "3</dev/null",
            "LISTEN_PID=1 is another process",
        );
    }

    fn more_names_than_descriptors_is_an_error() {
        fails_with(
            &[("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "web:admin")],
            "3</dev/null",
            "LISTEN_FDS=1 but LISTEN_FDNAMES holds 2 names",
        );
    }
}
