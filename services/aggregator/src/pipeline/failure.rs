//! Why a probe got no answer, as the pipeline view shows it. A probe's
//! failure explains a stage in the snapshots of the next minutes, so it is
//! kept as its message, with every cause, written out once when the probe
//! fails: cheap to clone, compare and serialize, and independent of the
//! client library that failed.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use streamproc_kit::error::Chain;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(Arc<str>);

impl Failure {
    /// `error: cause: …`
    pub fn from_error(error: &(dyn Error + 'static)) -> Self {
        Self(Chain(error).to_string().into())
    }

    /// `context: error: cause: …`
    pub fn of(context: &str, error: &(dyn Error + 'static)) -> Self {
        Self(format!("{context}: {}", Chain(error)).into())
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Self(message.into())
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
