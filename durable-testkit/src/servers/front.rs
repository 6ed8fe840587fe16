//! The endpoint of a shared object-storage server, as a store of the test's own.
//!
//! moto's S3 server and Azurite (`scripts/services.sh`) keep their objects in memory: a
//! killed one comes back empty, which no real S3 or Azure account does. So the outage
//! suite kills and restarts the *endpoint* instead: a TCP front on a spare port that
//! forwards to the shared server. Killing it closes its port and every connection through
//! it at once (the clients see refusals and resets, as from a crashed server); starting it
//! opens the same port again, in front of a server that kept everything it acknowledged.

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A running front: dropping or aborting it closes the port and every connection.
pub(super) struct Front {
    task: Option<JoinHandle<()>>,
}

impl Front {
    /// Listens on 127.0.0.1:`port` and forwards each connection to 127.0.0.1:`to`.
    pub(super) async fn open(port: u16, to: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap_or_else(|err| panic!("bind {port}: {err}"));
        let task = tokio::spawn(async move {
            // Owned by the accepting task: aborting it aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { continue };
                        connections.spawn(async move {
                            if let Ok(mut server) = TcpStream::connect(("127.0.0.1", to)).await {
                                let _ = copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Self { task: Some(task) }
    }

    /// Closes the port and every connection through it.
    pub(super) async fn close(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
