//! `warren users create`: make a user straight in the store, for the first
//! admin of a deployment on AWS (or an embedded store `warren dev` is not
//! running on). Afterwards admins manage users over `/admin/users`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use warren::adapters::aws::Resources;
use warren::adapters::embedded::{Durability, EmbeddedStore, MemoryQueue};
use warren::adapters::http::GuardedHttpClient;
use warren::domain::identity::{Permissions, Role};
use warren::keys::password::random_password;
use warren::service::identity::users::{self, NewUser};
use warren::{Config, Deps, runtime};

use crate::dev::Backend;

#[derive(Subcommand, Debug, Clone)]
pub enum UsersCommand {
    /// Make a user; prints its id (and its password when generated).
    Create(CreateOptions),
}

#[derive(Args, Debug, Clone)]
pub struct CreateOptions {
    #[arg(long)]
    pub username: String,
    /// `admin`, `user` or `viewer`.
    #[arg(long, default_value = "admin")]
    pub role: Role,
    /// Its password (default: a random one, printed once).
    #[arg(long, env = "WARREN_USER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Where the users are: `embedded` (redb under --data-dir; stop `warren
    /// dev` first, it holds the file) or `aws` (the DynamoDB table).
    #[arg(long, value_enum, default_value_t = Backend::Aws, env = "WARREN_BACKEND")]
    pub backend: Backend,
    #[arg(long, default_value = ".warren", env = "WARREN_DATA_DIR")]
    pub data_dir: PathBuf,
    #[arg(long, env = "WARREN_TABLE", default_value = "warren")]
    pub table: String,
}

pub async fn run(command: UsersCommand) -> anyhow::Result<()> {
    let UsersCommand::Create(opts) = command;
    let deps = store_deps(&opts).await?;
    let generated = opts.password.is_none();
    let password = opts.password.clone().unwrap_or_else(random_password);
    let new = NewUser {
        username: opts.username.clone(),
        password: password.clone(),
        role: opts.role,
        permissions: Permissions::default(),
        runs_limit: None,
    };
    let user = users::create(&deps, new)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "user {} ({}) created: id {}",
        user.username,
        user.role.as_str(),
        user.id
    );
    if generated {
        println!("password: {password} (shown once)");
    }
    Ok(())
}

/// Dependencies that reach the store (nothing here queues or calls out).
async fn store_deps(opts: &CreateOptions) -> anyhow::Result<Deps> {
    let http = GuardedHttpClient::new(Vec::new()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(match opts.backend {
        Backend::Embedded => {
            let path = opts.data_dir.join("warren.redb");
            let store = EmbeddedStore::open(&path, Durability::Sync)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| {
                    format!("opening {} (is warren dev running on it?)", path.display())
                })?;
            runtime::embedded(
                Config::default(),
                http,
                Arc::new(store),
                Arc::new(MemoryQueue::new()),
            )
        }
        Backend::Aws => {
            let resources = Resources {
                table: opts.table.clone(),
                ..Resources::from_env()
            };
            runtime::aws(Config::default(), http, &resources, None).await
        }
    })
}
