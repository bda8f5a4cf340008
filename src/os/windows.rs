//! The crate's only `unsafe` on Windows: a listening socket handed to another process, where
//! a child inherits no socket (`WSADuplicateSocketW` describes it for the new process,
//! `WSASocketW` opens it there), and the console handler of lameduck's own
//! (`SetConsoleCtrlHandler`), which drains on a console close, a log-off or a shutdown.

#![allow(unsafe_code)]

use std::io;
use std::net::TcpListener;
use std::os::windows::io::{AsRawSocket, FromRawSocket, RawSocket};

use windows_sys::Win32::Networking::WinSock::{
    WSADuplicateSocketW, WSAGetLastError, WSASocketW, FROM_PROTOCOL_INFO, INVALID_SOCKET, SOCKET,
    WSAPROTOCOL_INFOW, WSA_FLAG_NO_HANDLE_INHERIT, WSA_FLAG_OVERLAPPED,
};

/// The size of the description: `WSAPROTOCOL_INFOW`, 628 bytes of integers, a GUID and
/// UTF-16 text, with no padding.
const INFO_SIZE: usize = std::mem::size_of::<WSAPROTOCOL_INFOW>();

fn last_error() -> io::Error {
    // SAFETY: reads the calling thread's last Winsock error; no memory touched.
    io::Error::from_raw_os_error(unsafe { WSAGetLastError() })
}

/// What process `pid` needs to open `listener` too, as bytes to send it.
///
/// # Errors
///
/// What `WSADuplicateSocketW` says (the process is gone, say).
pub(crate) fn describe_for(listener: &TcpListener, pid: u32) -> io::Result<Vec<u8>> {
    let mut info = WSAPROTOCOL_INFOW::default();
    // SAFETY: the socket is open while `listener` is borrowed; `info` is a valid, writable
    // WSAPROTOCOL_INFOW, which the call fills.
    let failed =
        unsafe { WSADuplicateSocketW(listener.as_raw_socket() as SOCKET, pid, &mut info) != 0 };
    if failed {
        return Err(last_error());
    }
    // SAFETY: `info` is plain data without padding (see INFO_SIZE), so each of its
    // INFO_SIZE bytes is initialised; the slice does not outlive it.
    let bytes = unsafe {
        std::slice::from_raw_parts((&info as *const WSAPROTOCOL_INFOW).cast::<u8>(), INFO_SIZE)
    };
    Ok(bytes.to_vec())
}

/// The listening socket `bytes` describe (from [`describe_for`] in the old process).
/// Winsock must be started in this process: lameduck has opened the baton's connection by
/// then, which starts it.
///
/// # Errors
///
/// If `bytes` is not a description, or `WSASocketW` refuses it.
pub(crate) fn listener_from(bytes: &[u8]) -> io::Result<TcpListener> {
    if bytes.len() != INFO_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a socket description of {} bytes, not {INFO_SIZE}",
                bytes.len()
            ),
        ));
    }
    // SAFETY: `bytes` holds exactly INFO_SIZE bytes, and WSAPROTOCOL_INFOW is plain data for
    // which any bytes are a value; `read_unaligned` copes with the buffer's alignment.
    let info: WSAPROTOCOL_INFOW = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    // SAFETY: `info` is valid for the call; FROM_PROTOCOL_INFO takes the family, type and
    // protocol from it.
    let socket = unsafe {
        WSASocketW(
            FROM_PROTOCOL_INFO,
            FROM_PROTOCOL_INFO,
            FROM_PROTOCOL_INFO,
            &info,
            0,
            WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT,
        )
    };
    if socket == INVALID_SOCKET {
        return Err(last_error());
    }
    // SAFETY: `socket` was just opened and no one else owns it.
    Ok(unsafe { TcpListener::from_raw_socket(socket as RawSocket) })
}

/// The trigger lameduck's console handler fires, set once by [`install_console_handler`].
static CONSOLE_TRIGGER: std::sync::OnceLock<crate::Trigger> = std::sync::OnceLock::new();

/// Registers lameduck's handler for the console's close, log-off and shutdown events, ahead
/// of `ctrlc`'s (a handler registered later is called first): it fires `trigger` and waits
/// for the drains (`shutdown/console.rs`); Ctrl+C and Ctrl+Break go on to `ctrlc`'s.
///
/// # Errors
///
/// What `SetConsoleCtrlHandler` says.
pub(crate) fn install_console_handler(trigger: &crate::Trigger) -> io::Result<()> {
    use windows_sys::Win32::System::Console::SetConsoleCtrlHandler;
    if CONSOLE_TRIGGER.set(trigger.clone()).is_err() {
        return Ok(()); // installed already: `ctrlc` refuses a second install before this
    }
    // SAFETY: `console_handler` has the signature of a HandlerRoutine and lives as long as
    // the process; registering it touches no memory of ours.
    if unsafe { SetConsoleCtrlHandler(Some(console_handler), 1) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Called by Windows on a thread of its own for each console event.
unsafe extern "system" fn console_handler(event: u32) -> windows_sys::core::BOOL {
    use crate::shutdown::console::{self, ConsoleEvent};
    use windows_sys::Win32::System::Console::{
        CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT,
    };
    let event = match event {
        CTRL_CLOSE_EVENT => ConsoleEvent::Close,
        CTRL_LOGOFF_EVENT => ConsoleEvent::Logoff,
        CTRL_SHUTDOWN_EVENT => ConsoleEvent::Shutdown,
        _ => return 0, // Ctrl+C, Ctrl+Break: the next handler, `ctrlc`'s
    };
    if let Some(trigger) = CONSOLE_TRIGGER.get() {
        // A panic must not unwind into Windows: caught, and the process ends as it would.
        let service = crate::shutdown::service::service_mode();
        let _ = std::panic::catch_unwind(|| {
            console::on_event(event, trigger, console::HANDLER_WAIT, service)
        });
    }
    // Handled (not passed to `ctrlc`): Windows ends the process now, a service's after a
    // log-off excepted.
    1
}
