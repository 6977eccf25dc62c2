//! The server's configuration file: loopback ports, a sqlite store in the
//! server's own directory, and secrets in a file only its owner reads.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};

use super::server::Ports;
use super::{Garage, REGION};

impl Garage {
    /// Writes the config file the server is started with.
    pub(super) fn write_config(&self, rpc_secret: &str, admin_token: &str) -> Result<()> {
        let Ports { rpc, s3, admin } = self.ports;
        let dir = &self.dir;
        let config = format!(
            r#"# Written by testkit::garage for a throw-away single-node server.
metadata_dir = "{meta}"
data_dir = "{data}"
# sqlite opens faster than LMDB's large map and is crash-safe under SIGKILL.
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{admin_token}"
"#,
            meta = dir.join("meta").display(),
            data = dir.join("data").display(),
        );
        // Garage refuses secrets in files others can read.
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.config_path)
            .with_context(|| format!("writing {}", self.config_path.display()))?;
        file.write_all(config.as_bytes())
            .with_context(|| format!("writing {}", self.config_path.display()))?;
        Ok(())
    }
}
