//! The client side: [`PikeClient`] per business, [`ChannelProxy`] owning
//! the channels (shared by default, independent per business on demand).

mod channels;
mod error;
mod event;
mod pike_client;
mod proxy;

pub use self::channels::Mode;
pub use self::error::{Error, ErrorKind};
pub use self::event::{ClientEvent, ClientState, Message, StopReason};
pub use self::pike_client::{
    CREDENTIAL_PROVIDER_TIMEOUT, ClientOptions, CredentialProvider, CredentialRequest, PikeClient,
    RoomPosition, SendReceipt, Sending, Session,
};
pub use self::proxy::{ChannelProxy, ChannelProxyBuilder};
