//! Tools built on the test kit: `demo` (the whole pipeline on loopback), `bench` (throughput,
//! latency, memory and the side-by-side with the original receiver), and the glue that points a
//! daemon configuration at the fake endpoint. Only with the `tools` feature (on by default for
//! `cargo run`, off in the production build).

pub mod bench;
pub mod demo;

use crate::config::{AliyunConfig, AuthMode, Secret, SignMethod};
use receiver_testkit::fake::{self, FakeAliyun, FakeConfig, FakeError};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A client configuration matching `fake` at `addr` (no `ca_file`; see [`client_config`]): one
/// connection, credit 64, idle 60 s, setup 15 s.
pub fn client_config_for(fake: &FakeConfig, addr: SocketAddr, client_id: &str) -> AliyunConfig {
    let (ak, secret) = fake::credentials(fake);
    AliyunConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        access_key_id: ak,
        access_key_secret: Secret::new(secret),
        iot_instance_id: fake.iot_instance_id.clone(),
        consumer_group_id: fake.consumer_group_id.clone(),
        client_id: client_id.to_string(),
        sign_method: SignMethod::HmacSha1,
        auth_mode: AuthMode::AkSign,
        ca_file: None,
        connections: 1,
        source_address: "default".into(),
        credit: 64,
        idle_timeout: Duration::from_secs(60),
        setup_timeout: Duration::from_secs(15),
        reconnect_max: Duration::from_secs(60),
    }
}

/// Writes the fake's CA to `dir/fake-aliyun-ca.pem` and returns a client configuration pointing
/// at it with matching credentials.
pub fn client_config(
    fake: &FakeAliyun,
    dir: &Path,
    client_id: &str,
) -> Result<AliyunConfig, FakeError> {
    let mut cfg = client_config_for(fake.config(), fake.addr(), client_id);
    cfg.ca_file = Some(fake.write_ca(dir)?);
    Ok(cfg)
}

/// `fake.client_config(dir, id)`: the same as [`client_config`], as a method.
pub trait FakeClientConfig {
    /// See [`client_config`].
    fn client_config(&self, dir: &Path, client_id: &str) -> Result<AliyunConfig, FakeError>;
}

impl FakeClientConfig for FakeAliyun {
    fn client_config(&self, dir: &Path, client_id: &str) -> Result<AliyunConfig, FakeError> {
        client_config(self, dir, client_id)
    }
}
