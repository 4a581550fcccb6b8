//! Credential expiry and refresh: a login accepted with an expiry ends with
//! TOKEN_EXPIRED unless the client refreshes it in time; a refresh keeps the
//! login (same connection, same stream, nothing lost or repeated).

use std::sync::Arc;
use std::time::Instant;

use proto::channel::{Error as ErrorFrame, Login, LoginResult};
use proto::tunnel::{ClientHello, ErrorCode};
use tntunnel::Frame;

use super::util::*;
use crate::{
    ConnectionState, CredentialExpiry, Event, Message, ReplyError, ServerChannel, ServerConfig,
    ServerEvent, StreamId,
};

fn expiring_events(pair: &Pair) -> Vec<(Instant, Event)> {
    pair.events_where(|e| matches!(e, Event::CredentialExpiring { .. }))
}

fn login_failures(pair: &Pair) -> Vec<(Instant, Event)> {
    pair.events_where(|e| matches!(e, Event::LoginFailed { .. }))
}

#[test]
fn an_expired_credential_ends_the_login_with_token_expired() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.gateway.credential_ttl.insert("u42".into(), secs(600));
    let chat = pair.login("chat", "u42");
    let order = pair.login("order", "u7");
    pair.start();
    pair.connect_and_login();
    let logged_in = pair.time;
    let expires = pair
        .client
        .credential_expires_at_ms(chat)
        .expect("the login result carries the expiry");
    assert!(
        expires >= unix_ms_at(logged_in) + 599_000 && expires <= unix_ms_at(logged_in) + 600_000,
        "{expires}"
    );
    assert_eq!(pair.client.credential_expires_at_ms(order), None);

    let ended = pair.run_until(secs(700), |p| !login_failures(p).is_empty());
    assert!(ended, "the login did not end");
    let failures = login_failures(&pair);
    let (at, failure) = &failures[0];
    assert!(
        matches!(failure, Event::LoginFailed { stream, code: ErrorCode::TokenExpired, .. } if *stream == chat),
        "{failure:?}"
    );
    let lived = *at - logged_in;
    assert!(
        lived >= secs(599) && lived <= secs(601),
        "ended after {lived:?}"
    );
    // The application was asked once, a margin (60 s) before.
    let asked = expiring_events(&pair);
    assert_eq!(asked.len(), 1, "{asked:?}");
    let lead = *at - asked[0].0;
    assert!(
        lead >= secs(59) && lead <= secs(61),
        "asked {lead:?} before"
    );
    assert_eq!(pair.gateway.expired.len(), 1);
    assert_eq!(pair.gateway.expired[0].1, "u42");

    // Only that login ended: the connection and the other business go on.
    assert_eq!(pair.client.state(), ConnectionState::Connected);
    assert!(!pair.client.streams().any(|s| s == chat));
    assert!(pair.client.is_logged_in(order));
    pair.push("u42", "too late");
    pair.push("u7", "still here");
    pair.drive();
    assert!(pair.deliveries(chat).is_empty());
    assert_eq!(pair.deliveries(order).len(), 1);
    assert_eq!(pair.conns.len(), 1, "no reconnect");
}

#[test]
fn a_refreshed_credential_keeps_the_login_and_loses_nothing() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.gateway.credential_ttl.insert("u42".into(), secs(600));
    let chat = pair.login("chat", "u42");
    pair.start();
    pair.connect_and_login();
    let first_expiry = pair.client.credential_expires_at_ms(chat).expect("expiry");

    let end = pair.time + secs(1900);
    let mut pushed = 0u64;
    let mut answered = 0usize;
    while pair.time < end {
        pushed += 1;
        pair.push("u42", &format!("m{pushed}"));
        pair.drive_for(secs(15));
        let asked = expiring_events(&pair).len();
        if asked > answered {
            answered = asked;
            pair.client
                .refresh_credential(chat, format!("fresh-{asked}"), pair.time)
                .expect("logged in");
            // A message pushed while the refresh is on the wire.
            pushed += 1;
            pair.push("u42", &format!("m{pushed}"));
        }
    }
    pair.drive();

    assert!(
        login_failures(&pair).is_empty(),
        "{:?}",
        login_failures(&pair)
    );
    assert!(pair.client.is_logged_in(chat));
    let seqs: Vec<u64> = pair.deliveries(chat).iter().map(|d| d.seq).collect();
    assert_eq!(
        seqs,
        (1..=pushed).collect::<Vec<_>>(),
        "each once, in order"
    );
    assert!(answered >= 3, "asked {answered} times in 1900 s");
    let refreshed: Vec<u64> = pair
        .events_where(|e| matches!(e, Event::CredentialRefreshed { .. }))
        .into_iter()
        .map(|(_, e)| match e {
            Event::CredentialRefreshed { expires_at_ms, .. } => expires_at_ms,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(refreshed.len(), answered);
    assert!(refreshed.windows(2).all(|w| w[0] < w[1]));
    assert!(refreshed[0] > first_expiry);
    assert_eq!(
        pair.client.credential_expires_at_ms(chat),
        refreshed.last().copied()
    );
    let credentials: Vec<&str> = pair
        .gateway
        .refreshes
        .iter()
        .map(|(_, _, c)| c.as_str())
        .collect();
    assert_eq!(credentials[..3], ["fresh-1", "fresh-2", "fresh-3"]);
    // Refreshed in place: one connection, one login, nothing expired.
    assert_eq!(pair.conns.len(), 1);
    assert_eq!(pair.gateway.logins.len(), 1);
    assert!(pair.gateway.expired.is_empty());

    // A re-login after a reconnect presents the fresh credential.
    pair.kill_connection();
    pair.wait_disconnected();
    pair.connect_and_login();
    assert_eq!(
        pair.gateway.login_credentials.last().map(String::as_str),
        Some(format!("fresh-{answered}").as_str())
    );
}

#[test]
fn a_refused_refresh_keeps_the_login_until_its_expiry() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.gateway.credential_ttl.insert("u42".into(), secs(600));
    pair.gateway.reject_refresh = Some(ErrorCode::AuthFailed);
    let chat = pair.login("chat", "u42");
    pair.start();
    pair.connect_and_login();
    let logged_in = pair.time;
    assert!(pair.run_until(secs(600), |p| !expiring_events(p).is_empty()));
    pair.client
        .refresh_credential(chat, "forged", pair.time)
        .expect("logged in");
    pair.drive();
    let failed = pair.events_where(|e| matches!(e, Event::CredentialRefreshFailed { .. }));
    assert!(
        matches!(
            &failed[..],
            [(
                _,
                Event::CredentialRefreshFailed {
                    code: ErrorCode::AuthFailed,
                    ..
                }
            )]
        ),
        "{failed:?}"
    );
    assert!(pair.client.is_logged_in(chat), "the login goes on");
    pair.push("u42", "before expiry");
    pair.drive();
    assert_eq!(pair.deliveries(chat).len(), 1);

    assert!(pair.run_until(secs(120), |p| !login_failures(p).is_empty()));
    let failures = login_failures(&pair);
    assert!(matches!(
        failures[0].1,
        Event::LoginFailed {
            code: ErrorCode::TokenExpired,
            ..
        }
    ));
    assert!(failures[0].0 - logged_in <= secs(601));
    assert_eq!(expiring_events(&pair).len(), 1, "asked only once");
}

#[test]
fn a_credential_renewed_while_the_login_is_in_flight_is_sent_once_it_is_accepted() {
    let _guard = subscribe();
    let mut pair = Pair::new();
    pair.gateway.credential_ttl.insert("u42".into(), secs(600));
    let chat = pair.login("chat", "u42");
    pair.start();
    // The dial completes, the login leaves; the app renews before the answer.
    assert!(pair.step());
    assert_eq!(pair.client.state(), ConnectionState::Connected);
    pair.client
        .refresh_credential(chat, "renewed", pair.time)
        .expect("known stream");
    pair.connect_and_login();
    pair.drive();
    assert_eq!(pair.gateway.login_credentials, ["cred:u42"]);
    let refreshed: Vec<&str> = pair
        .gateway
        .refreshes
        .iter()
        .map(|(_, _, c)| c.as_str())
        .collect();
    assert_eq!(refreshed, ["renewed"]);
    assert_eq!(
        pair.events_where(|e| matches!(e, Event::CredentialRefreshed { .. }))
            .len(),
        1
    );
}

fn server_with_login(expiry: Option<std::time::Duration>) -> (ServerChannel, StreamId, Instant) {
    let t = origin();
    let mut server =
        ServerChannel::new(Arc::new(ServerConfig::default()), ClientHello::default(), t);
    let login = Login {
        stream: 3,
        biz: "chat".into(),
        alias: "u1".into(),
        credential: "old".into(),
        ..Login::default()
    };
    server.handle_frame(Message::Login(login).to_frame(), t);
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::LoginRequested { .. })
    ));
    let stream = StreamId::new(3);
    let expiry = expiry.map(|d| CredentialExpiry::at_unix_ms(unix_ms_at(t + d), t, unix_ms_at(t)));
    server
        .accept_login_until(stream, "r", 0, expiry, t)
        .expect("pending");
    let result: Vec<Frame> = std::iter::from_fn(|| server.poll_transmit()).collect();
    let result = result[0].decode::<LoginResult>().expect("login result");
    assert_eq!(result.expires_at_ms, expiry.map_or(0, |e| e.unix_ms));
    (server, stream, t)
}

fn relogin(server: &mut ServerChannel, credential: &str, t: Instant) {
    let login = Login {
        stream: 3,
        biz: "chat".into(),
        alias: "u1".into(),
        credential: credential.into(),
        ..Login::default()
    };
    server.handle_frame(Message::Login(login).to_frame(), t);
}

fn error_codes(server: &mut ServerChannel) -> Vec<ErrorCode> {
    std::iter::from_fn(|| server.poll_transmit())
        .filter_map(|f| f.decode::<ErrorFrame>().ok())
        .map(|e| e.code())
        .collect()
}

#[test]
fn server_refreshes_only_expiring_logins_one_at_a_time() {
    let _guard = subscribe();
    // No expiry: a second LOGIN on the stream is ALREADY_LOGGED_IN, as ever.
    let (mut server, _, t) = server_with_login(None);
    relogin(&mut server, "new", t);
    assert_eq!(server.poll_event(), None);
    assert_eq!(error_codes(&mut server), [ErrorCode::AlreadyLoggedIn]);

    // With an expiry it is a refresh; a second one waits for the answer.
    let (mut server, stream, t) = server_with_login(Some(secs(60)));
    assert_eq!(server.login_expiry(stream), Some(t + secs(60)));
    assert_eq!(server.poll_timeout(), Some(t + secs(60)));
    relogin(&mut server, "new", t + secs(10));
    assert_eq!(
        server.poll_event(),
        Some(ServerEvent::CredentialRefresh {
            stream,
            biz: "chat".into(),
            alias: "u1".into(),
            credential: "new".into(),
        })
    );
    relogin(&mut server, "newer", t + secs(11));
    assert_eq!(server.poll_event(), None);
    assert_eq!(error_codes(&mut server), [ErrorCode::AlreadyLoggedIn]);
    let later = t + secs(11);
    let expiry =
        CredentialExpiry::at_unix_ms(unix_ms_at(later + secs(70)), later, unix_ms_at(later));
    server.accept_refresh(stream, Some(expiry), later).unwrap();
    let out: Vec<Frame> = std::iter::from_fn(|| server.poll_transmit()).collect();
    let result = out[0].decode::<LoginResult>().expect("a login result");
    assert_eq!(result.code(), ErrorCode::Unspecified);
    assert_eq!(result.expires_at_ms, unix_ms_at(later + secs(70)));
    assert_eq!(server.login_expiry(stream), Some(later + secs(70)));
    // No refresh pending any more: answers are refused.
    assert_eq!(
        server.accept_refresh(stream, None, later),
        Err(ReplyError::NoPendingLogin(stream))
    );
    // The old expiry passes: nothing happens; the new one ends the login.
    server.handle_timeout(t + secs(60));
    assert_eq!(server.poll_event(), None);
    assert!(server.logged_in().any(|s| s == stream));
    server.handle_timeout(later + secs(70));
    assert_eq!(
        server.poll_event(),
        Some(ServerEvent::LoginExpired { stream })
    );
    assert_eq!(error_codes(&mut server), [ErrorCode::TokenExpired]);
    assert!(!server.logged_in().any(|s| s == stream));
    assert!(!server.is_closed(), "only the login ends");
    // The timer is gone with the login (the idle timer remains).
    assert!(
        server
            .poll_timeout()
            .is_some_and(|at| at != later + secs(70))
    );
}

#[test]
fn a_refused_refresh_keeps_the_old_expiry_and_a_logout_stops_the_timer() {
    let _guard = subscribe();
    let (mut server, stream, t) = server_with_login(Some(secs(60)));
    relogin(&mut server, "bad", t + secs(1));
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::CredentialRefresh { .. })
    ));
    server
        .reject_refresh(stream, ErrorCode::Forbidden, "no", t + secs(1))
        .unwrap();
    let out: Vec<Frame> = std::iter::from_fn(|| server.poll_transmit()).collect();
    assert_eq!(
        out[0].decode::<LoginResult>().unwrap().code(),
        ErrorCode::Forbidden
    );
    assert_eq!(server.login_expiry(stream), Some(t + secs(60)));
    server.handle_frame(
        Message::Logout(proto::channel::Logout { stream: 3 }).to_frame(),
        t + secs(2),
    );
    assert_eq!(server.poll_event(), Some(ServerEvent::LoggedOut { stream }));
    assert_ne!(server.poll_timeout(), Some(t + secs(60)));
}
