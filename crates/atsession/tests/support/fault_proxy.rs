//! A loopback TCP proxy in front of a real server that a test can freeze (stop forwarding,
//! as a server stopped with SIGSTOP looks from outside) and kill (drop every connection and
//! refuse new ones, as a killed server looks), in the middle of a call.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Both directions.
    Open,
    /// Nothing: requests and answers are held (a frozen server).
    Frozen,
    /// Requests reach the server, answers are held (the server did the work; the answer is
    /// lost in the freeze).
    AnswersHeld,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    flow: watch::Sender<Flow>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (flow, _) = watch::channel(Flow::Open);
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let upstream = upstream.to_owned();
        let accept = {
            let flow = flow.clone();
            let tasks = Arc::clone(&tasks);
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = tokio::spawn(pump(cr, sw, flow.subscribe(), false));
                    let down = tokio::spawn(pump(sr, cw, flow.subscribe(), true));
                    let mut t = tasks.lock().unwrap();
                    t.push(up);
                    t.push(down);
                }
            })
        };
        tasks.lock().unwrap().push(accept);
        Self { addr, flow, tasks }
    }

    pub fn set(&self, flow: Flow) {
        self.flow.send_replace(flow);
    }

    /// Drops every connection and stops accepting: new connections are refused.
    pub fn kill(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut flow: watch::Receiver<Flow>,
    answers: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let passes = |f: &Flow| match f {
            Flow::Open => true,
            Flow::Frozen => false,
            Flow::AnswersHeld => !answers,
        };
        if flow.wait_for(passes).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
