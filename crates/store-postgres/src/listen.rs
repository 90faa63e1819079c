//! Each node's `LISTEN` connection: news of actions other nodes created
//! wakes the devices waiting here.

use crate::database::NEW_ACTION_CHANNEL;
use palisade_domain::devices::wakeups::Wakeups;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{AsyncMessage, NoTls};

/// Pause before connecting again after the connection was lost.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Relays notifications to `wakeups` for as long as the process runs,
/// connecting again whenever the connection is lost.
pub(crate) async fn relay(config: tokio_postgres::Config, wakeups: Arc<Wakeups>) {
    loop {
        if let Err(error) = listen(&config, &wakeups).await {
            tracing::warn!(%error, "lost the database connection that relays new actions; reconnecting");
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

async fn listen(
    config: &tokio_postgres::Config,
    wakeups: &Wakeups,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (sender, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    // The connection must be polled for the LISTEN below to complete and for
    // notifications to arrive; it ends (and so does the channel) when lost.
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if sender.send(notification).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    });
    client
        .batch_execute(&format!("LISTEN {NEW_ACTION_CHANNEL}"))
        .await?;
    // Actions created while this node was not listening woke nobody here.
    wakeups.wake_all();
    while let Some(notification) = notifications.recv().await {
        if let Some((tenant_id, machine_id)) = notification.payload().split_once(' ') {
            wakeups.wake(tenant_id, machine_id);
        }
    }
    drop(client);
    match driver.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}
