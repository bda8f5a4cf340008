//! The broadcast: every listener wakes at once, and a late one sees the fire at once.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::select;
use lameduck::Reason;

use crate::support::BOUND;

#[test]
fn sixty_four_listeners_in_wait_and_select_wake_within_50ms() {
    let (trigger, listener) = lameduck::trigger();
    let (woke_tx, woke) = crossbeam_channel::unbounded();
    let ready = Arc::new(Barrier::new(65));
    let mut threads = Vec::new();
    for i in 0..64 {
        let listener = listener.clone();
        let woke_tx = woke_tx.clone();
        let ready = Arc::clone(&ready);
        threads.push(thread::spawn(move || {
            ready.wait();
            match i % 4 {
                0 => {
                    listener.wait();
                }
                1 => assert!(listener.wait_timeout(BOUND).is_some()),
                2 => assert!(listener.sleep(BOUND).is_err()),
                _ => {
                    let never = crossbeam_channel::never::<()>();
                    select! {
                        recv(listener.receiver()) -> _ => {}
                        recv(never) -> _ => unreachable!(),
                        default(BOUND) => panic!("select! was not woken"),
                    }
                }
            }
            woke_tx.send(Instant::now()).unwrap();
        }));
    }
    ready.wait();
    // Give the threads the chance to block; they are correct either way (a wait after the
    // fire returns at once), this only makes the test exercise the wake-up path.
    thread::yield_now();
    let fired_at = Instant::now();
    assert!(trigger.fire(Reason::Requested));
    let mut slowest = Duration::ZERO;
    for _ in 0..64 {
        let at = woke.recv_timeout(BOUND).expect("a listener did not wake");
        slowest = slowest.max(at.saturating_duration_since(fired_at));
    }
    for t in threads {
        t.join().unwrap();
    }
    eprintln!("64 listeners woken, the slowest {slowest:.1?} after the fire");
}

#[test]
fn a_listener_made_or_asked_after_the_fire_sees_it_at_once() {
    let (trigger, listener) = lameduck::trigger();
    trigger.fire(Reason::Other("test".into()));

    let late = trigger.listener();
    let start = Instant::now();
    assert!(late.is_triggered());
    assert_eq!(*late.wait().reason(), Reason::Other("test".into()));
    assert!(late.wait_timeout(BOUND).is_some());
    assert!(listener.wait_deadline(Instant::now() + BOUND).is_some());
    assert!(listener.clone().sleep(BOUND).is_err());
    select! {
        recv(late.receiver()) -> msg => assert!(msg.is_err()),
        default(BOUND) => panic!("receiver not ready after the fire"),
    }
    // Any of the waits above that blocked would have taken BOUND.
    assert!(start.elapsed() < BOUND);
}

#[test]
fn the_first_reason_and_time_are_kept() {
    let (trigger, listener) = lameduck::trigger();
    let before = Instant::now();
    trigger.fire(Reason::Signal);
    trigger.fire(Reason::Requested);
    let fired = listener.fired().unwrap();
    assert_eq!(*fired.reason(), Reason::Signal);
    assert!(fired.at() >= before);
    assert_eq!(trigger.fire_count(), 2);
}
