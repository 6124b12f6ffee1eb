//! The open loop: jobs at their intended send times, a worker per connection that sends each
//! one (signed afresh, in the mix's dialect) and tallies its latency from the intended time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use dialects::wire::{sign_native, SIGNATURE_HEADER};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sim::dialect::OpKind;
use tokio::time::Instant;

use crate::mix::{Call, Kind, Mix, Shape};
use crate::tally::*;
use crate::*;

pub(crate) struct Job {
    pub(crate) intended: Instant,
    /// The measured second it was meant to go out in (0 for the first; 0 in the warm-up).
    pub(crate) second: u32,
    pub(crate) kind: Kind,
    pub(crate) call: Call,
    /// Measured (past the warm-up)?
    pub(crate) measured: bool,
}

pub(crate) async fn drive(args: &Args, addrs: &[SocketAddr]) -> anyhow::Result<Summary> {
    let connections = args
        .connections
        .min(open_files_allowed().saturating_sub(64).max(1));
    let capacity = (args.rate as usize * 10).max(1_000);
    // One queue for all connections, or with `--route-by-player` one per target, its
    // connections taking only its players' calls.
    let queues = if args.route_by_player { addrs.len() } else { 1 };
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..queues)
        .map(|_| async_channel::bounded::<Job>(capacity))
        .unzip();
    // Each request's credential: the provider's secret, or the admin's bearer token.
    let secret: Arc<[u8]> = match args.mode {
        Mode::Reports => admin_token(addrs[0], args).await?.into_bytes().into(),
        _ => args.secret.clone().into_bytes().into(),
    };
    let reports: Vec<Arc<str>> = args
        .reports
        .split(',')
        .flat_map(|report| {
            ["day", "provider", "game"]
                .map(|by| Arc::from(format!("/api/admin/reports/{report}?group_by={by}")))
        })
        .collect();
    // Connections waiting for a job, less jobs handed out that no connection has taken yet
    // (below zero: requests are waiting for a connection).
    let idle = Arc::new(AtomicIsize::new(0));
    // Connected before the clock starts: opening a thousand connections is set-up, not load.
    let (ready_tx, ready_rx) = async_channel::bounded::<()>(connections);
    // Raised `--drain` seconds after the schedule ended: what is still open then is unanswered.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            let ready = ready_tx.clone();
            tokio::spawn(worker(
                addrs[i % addrs.len()],
                rxs[i % queues].clone(),
                secret.clone(),
                idle.clone(),
                ready,
                stop_rx.clone(),
            ))
        })
        .collect();
    drop(ready_tx);
    let connected = tokio::time::timeout(Duration::from_secs(30), async {
        let mut n = 0;
        while ready_rx.recv().await.is_ok() {
            n += 1;
        }
        n
    })
    .await
    .context("connections not open after 30 s")?;
    if connected < connections {
        eprintln!("loadtest: {connected} of {connections} connections opened at the start");
    }
    let mut busy_at_times = false;
    let mut unsent = 0u64;
    let seed = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64 | 1;
    let key = workspace_file(&args.hub88_key.display().to_string());
    let mut mix = Mix::new(
        args.mix,
        provider_of(args)?,
        args.players,
        args.duplicate_percent,
        args.hub88_percent,
        &key,
        seed,
    )
    .map_err(anyhow::Error::msg)?;
    if args.mode == Mode::Callbacks && args.mix == Shape::EveryDialect {
        let signing = std::time::Instant::now();
        mix.presign(args.rate * (args.warmup + args.duration));
        eprintln!(
            "loadtest: Hub88-style calls signed ahead in {:.1} s",
            signing.elapsed().as_secs_f64()
        );
    }
    // Set-up is over (connections open, calls signed ahead): a bench measuring CPU over the
    // run waits for this line.
    eprintln!("{CLOCK_STARTS}");
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + Duration::from_secs(args.warmup);
    let measured_from_unix_ms = (SystemTime::now() + (measure_from - Instant::now()))
        .duration_since(UNIX_EPOCH)?
        .as_millis();
    let total = args.rate * (args.warmup + args.duration);
    let ping: Arc<str> = "/ready".into();
    let login: Arc<str> = "/api/auth/login".into();
    let mut sent = 0u64;
    for i in 0..total {
        let intended = start + Duration::from_nanos(i * 1_000_000_000 / args.rate);
        if intended > Instant::now() {
            tokio::time::sleep_until(intended).await;
        }
        let (kind, call) = match args.mode {
            Mode::Ping => (
                Kind::Ping,
                Call {
                    player: 0,
                    path: ping.clone(),
                    body: Bytes::new(),
                    dialect: None,
                },
            ),
            Mode::Callbacks => mix.next(),
            Mode::Reports => (
                Kind::Report,
                Call {
                    player: 0,
                    path: reports[i as usize % reports.len()].clone(),
                    body: Bytes::new(),
                    dialect: None,
                },
            ),
            Mode::Logins => {
                let player = 1 + mix.next_u32(args.players);
                let body = serde_json::json!({
                    "username": format!("player-{player}"),
                    "password": args.password,
                });
                (
                    Kind::Login,
                    Call {
                        player,
                        path: login.clone(),
                        body: Bytes::from(body.to_string()),
                        dialect: None,
                    },
                )
            }
        };
        let job = Job {
            intended,
            second: intended.saturating_duration_since(measure_from).as_secs() as u32,
            kind,
            call,
            measured: intended >= measure_from,
        };
        let measured = job.measured;
        sent += u64::from(measured);
        // More than 10 s of requests already waiting for a connection: this one is never
        // sent, and counted as such (a target that stopped answering does not stall the run).
        if txs[job.call.player as usize % queues]
            .try_send(job)
            .is_err()
        {
            unsent += u64::from(measured);
            continue;
        }
        if idle.fetch_sub(1, Ordering::AcqRel) <= 0 && measured {
            busy_at_times = true;
        }
    }
    drop(txs);
    let mut tally = Tally::new();
    // A target that cannot drain its backlog `--drain` s after the schedule ended: the
    // connections stop then, the requests still open or still queued are counted unanswered
    // (and fail the run's judgement like the unsent ones), and the run ends with what it
    // measured.
    let hard_stop = Instant::now() + Duration::from_secs(args.drain);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep_until(hard_stop).await;
        let _ = stop_tx.send(true);
    });
    for w in workers {
        match tokio::time::timeout_at(hard_stop + Duration::from_secs(10), w).await {
            Ok(Ok(t)) => tally.merge(t),
            Ok(Err(e)) => bail!("worker failed: {e}"),
            Err(_) => bail!("a connection did not stop 10 s after the run's hard stop"),
        }
    }
    stopper.abort();
    let mut unanswered = tally.unanswered;
    for rx in &rxs {
        while let Ok(job) = rx.try_recv() {
            unanswered += u64::from(job.measured);
        }
    }
    if unanswered > 0 {
        eprintln!(
            "loadtest: {unanswered} measured requests still unanswered {} s after the schedule ended (counted as such)",
            args.drain
        );
    }
    if busy_at_times {
        eprintln!("loadtest: all {connections} connections were busy at times: requests waited for one (counted in their latency, not in the service time)");
    }
    let answered_s = tally.last_answer.map_or(0.0, |t| {
        t.saturating_duration_since(measure_from).as_secs_f64()
    });
    Ok(Summary {
        tally,
        measured_s: answered_s.max(args.duration as f64),
        measured_from_unix_ms,
        sent,
        unsent,
        unanswered,
    })
}

/// The open-file limit, raised to the hard limit first (every connection is a descriptor).
pub(crate) fn open_files_allowed() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return usize::try_from(hard).unwrap_or(usize::MAX);
    }
    usize::try_from(soft).unwrap_or(usize::MAX)
}

pub(crate) async fn worker(
    addr: SocketAddr,
    jobs: async_channel::Receiver<Job>,
    secret: Arc<[u8]>,
    idle: Arc<AtomicIsize>,
    ready: async_channel::Sender<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally::new();
    let mut sender = connect(addr).await.ok();
    if sender.is_some() {
        let _ = ready.send(()).await;
    }
    drop(ready);
    loop {
        idle.fetch_add(1, Ordering::AcqRel);
        let job = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            job = jobs.recv() => job,
        };
        let Ok(job) = job else { break };
        let sent_at = Instant::now();
        let result = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => {
                tally.unanswered += u64::from(job.measured);
                break;
            }
            result = send(&mut sender, addr, &secret, &job) => result,
        };
        if !job.measured {
            continue;
        }
        let now = Instant::now();
        tally.last_answer = Some(now);
        let micros = now
            .saturating_duration_since(job.intended)
            .as_micros()
            .max(1) as u64;
        let service = now.saturating_duration_since(sent_at).as_micros().max(1) as u64;
        let _ = tally.service.record(service.min(120_000_000));
        let _ = tally.all.record(micros.min(120_000_000));
        tally
            .answers
            .push((job.second, micros.min(u64::from(u32::MAX)) as u32));
        if job.kind == Kind::Duplicate {
            let _ = tally.duplicates.record(micros.min(120_000_000));
        }
        tally.completed += 1;
        match result {
            Ok(status) => *tally.statuses.entry(status).or_default() += 1,
            Err(_) => {
                tally.transport_errors += 1;
                sender = None;
            }
        }
    }
    tally
}

pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

pub(crate) async fn send(
    sender: &mut Option<Sender>,
    addr: SocketAddr,
    secret: &[u8],
    job: &Job,
) -> anyhow::Result<String> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = Some(connect(addr).await?);
    }
    let s = sender.as_mut().expect("connected");
    s.ready().await?;
    let call = &job.call;
    let request = if job.kind == Kind::Ping {
        http::Request::get(&*call.path)
            .header(http::header::HOST, "loadtest")
            .body(Full::new(Bytes::new()))?
    } else if job.kind == Kind::Report {
        let bearer = format!("Bearer {}", String::from_utf8_lossy(secret));
        http::Request::get(&*call.path)
            .header(http::header::HOST, "loadtest")
            .header(http::header::AUTHORIZATION, bearer)
            .body(Full::new(Bytes::new()))?
    } else if job.kind == Kind::Login {
        http::Request::post(&*call.path)
            .header(http::header::HOST, "loadtest")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(call.body.clone()))?
    } else if let Some((provider, headers, _)) = &call.dialect {
        let content_type = if provider.kind == sim::dialect::Kind::Pragmatic {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        let mut request = http::Request::post(&*call.path)
            .header(http::header::HOST, "loadtest")
            .header(http::header::CONTENT_TYPE, content_type);
        for (name, value) in headers.iter() {
            request = request.header(*name, value);
        }
        request.body(Full::new(call.body.clone()))?
    } else {
        let t = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
        http::Request::post(&*call.path)
            .header(http::header::HOST, "loadtest")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign_native(secret, t, &call.body))
            .body(Full::new(call.body.clone()))?
    };
    let response = s.send_request(request).await?;
    let code = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(match &call.dialect {
        Some((provider, _, op)) => dialect_label(provider, *op, code, &body),
        None => status_label(code, &body),
    })
}

/// A dialect's answer as a label: the core name for OK, unknown player and insufficient
/// funds (so summaries and the set-up check read the same in every dialect), else its own.
pub(crate) fn dialect_label(
    provider: &sim::dialect::Provider,
    op: OpKind,
    code: u16,
    body: &[u8],
) -> String {
    match provider.classify(code, body) {
        sim::dialect::Attempt::Final(reply) => {
            let core = ["OK", "UNKNOWN_PLAYER", "INSUFFICIENT_FUNDS"]
                .into_iter()
                .find(|core| provider.expect(op, core) == reply.status);
            format!("{code} {}", core.unwrap_or(&reply.status))
        }
        sim::dialect::Attempt::Refused(_, what) => format!("{code} REFUSED {what}"),
        sim::dialect::Attempt::Unknown(what) => format!("{code} RETRY {what}"),
    }
}

/// `HTTP/200 OK`, `HTTP/503 TEMPORARY_ERROR`, ...: the HTTP status and the answer's status
/// (a REST answer's `code`; `OK` for its successes).
pub(crate) fn status_label(code: u16, body: &[u8]) -> String {
    let text = std::str::from_utf8(body).unwrap_or("");
    if text.starts_with(r#"{"success":true"#) || text.contains(r#""success":true"#) {
        return format!("{code} OK");
    }
    if let Some((_, rest)) = text.split_once(r#""code":""#) {
        return format!("{code} {}", rest.split('"').next().unwrap_or("-"));
    }
    let status = text
        .split_once(r#""status":""#)
        .and_then(|(_, rest)| rest.split('"').next())
        .unwrap_or("-");
    format!("{code} {status}")
}
