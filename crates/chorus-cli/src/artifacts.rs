//! `chorus artifacts export | import`: voices and pronunciation dictionaries between stores, as JSON lines (one
//! record per line, `"type": "voice"` or `"pronunciation_dict"`; the format of migration files too).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use chorus_api::persistence::{Artifacts, Record};
use chorus_artifacts::ArtifactStore;
use chorus_audio::output::OutputFile;

use crate::settings::Layers;
use crate::settings::file::FileSettings;

#[derive(Debug, clap::Subcommand)]
pub enum ArtifactsCommand {
    /// Write the store's voices and dictionaries to a JSON-lines file (all of them, or only the ids given).
    Export(ExportArgs),
    /// Upsert every record of a JSON-lines file into the store (idempotent); prints what changed.
    Import(ImportArgs),
}

/// The store to work on.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// The artifact store: a directory, `s3://bucket/prefix` or `gs://bucket/prefix` (default: the config
    /// file's `artifacts`, else ./data/artifacts).
    #[arg(long = "artifacts", env = "CHORUS_ARTIFACTS")]
    pub artifacts: Option<String>,
    /// A TOML config file (its `artifacts` key names the store).
    #[arg(long, env = "CHORUS_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The file to write (replaced).
    #[arg(long)]
    pub to: PathBuf,
    /// Only these voices (comma-separated ids). With `--voices` or `--dicts`, only the ids listed are exported.
    #[arg(long, value_delimiter = ',')]
    pub voices: Option<Vec<String>>,
    /// Only these pronunciation dictionaries (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    pub dicts: Option<Vec<String>>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The JSON-lines file to import.
    pub file: PathBuf,
}

fn open(args: &StoreArgs) -> Result<Artifacts> {
    let file = Layers::file(args.config.as_deref())?.resolve(&FileSettings::default())?;
    let location = args
        .artifacts
        .clone()
        .or(file.artifacts)
        .unwrap_or_else(|| chorus_artifacts::DEFAULT_LOCAL_STORE.to_owned());
    let store = ArtifactStore::open(&location).context("cannot open the artifact store")?;
    Ok(Artifacts::new(store, Arc::default(), Arc::default()))
}

pub fn run(cmd: ArtifactsCommand) -> Result<()> {
    let runtime = crate::process::runtime()?;
    match cmd {
        ArtifactsCommand::Export(args) => runtime.block_on(export(args)),
        ArtifactsCommand::Import(args) => runtime.block_on(import(args)),
    }
}

async fn export(args: ExportArgs) -> Result<()> {
    let artifacts = open(&args.store)?;
    let filtered = args.voices.is_some() || args.dicts.is_some();
    let none: Vec<String> = Vec::new();
    let (voices, dicts) = if filtered {
        (Some(args.voices.as_deref().unwrap_or(&none)), Some(args.dicts.as_deref().unwrap_or(&none)))
    } else {
        (None, None)
    };
    let records = artifacts.export(voices, dicts).await.context("cannot read the artifact store")?;
    let mut out = Vec::new();
    for record in &records {
        serde_json::to_writer(&mut out, record)?;
        out.push(b'\n');
    }
    let mut file = OutputFile::open(&args.to)?;
    if let Err(e) = file.write(&out) {
        file.abandon();
        return Err(e.into());
    }
    file.commit(|_| Ok(()))?;
    let voices = records.iter().filter(|r| matches!(r, Record::Voice(_))).count();
    println!(
        "exported {voices} voices and {} pronunciation dictionaries from {} to {}",
        records.len() - voices,
        artifacts.store,
        args.to.display()
    );
    Ok(())
}

async fn import(args: ImportArgs) -> Result<()> {
    let artifacts = open(&args.store)?;
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let report = artifacts.import(&bytes).await;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "created {}, updated {}, unchanged {}, failed {} (into {})",
        report.created,
        report.updated,
        report.unchanged,
        report.failed.len(),
        artifacts.store
    )?;
    for why in &report.failed {
        eprintln!("  {why}");
    }
    anyhow::ensure!(report.failed.is_empty(), "{} records were not imported", report.failed.len());
    Ok(())
}
