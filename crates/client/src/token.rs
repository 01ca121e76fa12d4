//! [`TokenProvider`]: where the driver and watcher get an access token, once
//! per connection attempt and for every in-band refresh.

use futures_util::future::BoxFuture;

/// Why a token could not be obtained (the provider's own error).
pub type TokenError = Box<dyn std::error::Error + Send + Sync>;

/// Supplies access tokens. Called on **every** (re)connect attempt, for each
/// `auth:refresh`, and for each HTTP fallback request, so it should return a
/// cached token while it is valid and fetch a new one when it is about to
/// expire. Any `Fn() -> impl Future<Output = Result<String, TokenError>>`
/// closure is a provider.
pub trait TokenProvider: Send + Sync + 'static {
    /// A currently valid token.
    fn token(&self) -> BoxFuture<'static, Result<String, TokenError>>;
}

impl<F, Fut> TokenProvider for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, TokenError>> + Send + 'static,
{
    fn token(&self) -> BoxFuture<'static, Result<String, TokenError>> {
        Box::pin(self())
    }
}
