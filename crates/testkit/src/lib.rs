//! Test helpers shared by every crate's tests: a fresh database of either kind per
//! test, an in-process Gantry application to send requests to, and a real S3
//! (SeaweedFS) for what speaks S3.
//!
//! PostgreSQL tests need a server; they use `GANTRY_TEST_POSTGRES_URL` or, by default,
//! `postgres://postgres@127.0.0.1:5432/postgres`, create a database of their own and
//! drop it afterwards. There is no silent skip: without a server they fail.

mod app;
mod database;
pub mod issuer;
pub mod seaweed;

pub use app::{TestApp, TestResponse, programs};
pub use database::{Backend, TestDatabase};

/// Generates each listed test twice, in modules `sqlite` and `postgres`, each run
/// against a fresh [`TestApp`] on that backend.
#[macro_export]
macro_rules! app_tests {
    ($(async fn $name:ident($app:ident) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $app = $crate::TestApp::spawn($crate::Backend::Sqlite).await;
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $app = $crate::TestApp::spawn($crate::Backend::Postgres).await;
                    $body
                }
            )*
        }
    };
}

/// Like [`app_tests!`], for tests that need only a [`store::Store`].
#[macro_export]
macro_rules! store_tests {
    ($(async fn $name:ident($store:ident) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let database = $crate::TestDatabase::create($crate::Backend::Sqlite).await;
                    let $store = database.store().await;
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let database = $crate::TestDatabase::create($crate::Backend::Postgres).await;
                    let $store = database.store().await;
                    $body
                }
            )*
        }
    };
}
