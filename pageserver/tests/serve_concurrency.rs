//! Several clients at once against one `pagefork serve`: each commits to `main` and to
//! branches it creates from `main`, over its own connections. Every acknowledged commit
//! must read back afterwards (at the latest state and at its own LSN), every branch must
//! hold what its creator had acknowledged on `main` before creating it, and all of it
//! must survive a shutdown and restart.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use serde_json::json;

use support::Server;

const PAGE: usize = 512;
const CLIENTS: u32 = 4;
const ROUNDS: u32 = 30;
/// Each client creates a branch of `main` every this many rounds.
const BRANCH_EVERY: u32 = 10;

/// One acknowledged commit: where, what, at which LSN.
struct Acked {
    branch: String,
    rel: u32,
    block: u32,
    fill: u8,
    lsn: String,
}

/// A branch and the `main` pages its creator had acknowledged before creating it.
struct Created {
    name: String,
    main_pages: Vec<(u32, u32, u8)>,
}

fn page_path(branch: &str, rel: u32, block: u32) -> String {
    format!("/v1/projects/p/branches/{branch}/pages/{rel}/{block}")
}

fn client(server: &Server, client: u32) -> (Vec<Acked>, Vec<Created>) {
    let (mut acked, mut created) = (Vec::new(), Vec::new());
    let mut current: Option<String> = None;
    for round in 0..ROUNDS {
        let fill = (client * ROUNDS + round) as u8;
        let answer = server
            .put_page(&page_path("main", client, round), &[fill; PAGE])
            .expect(200);
        acked.push(Acked {
            branch: "main".into(),
            rel: client,
            block: round,
            fill,
            lsn: answer["lsn"].as_str().unwrap().to_owned(),
        });
        if round % BRANCH_EVERY == 0 {
            let name = format!("c{client}-{round}");
            let body = json!({"branch_id": name, "spec": {"source_branch": "main"}});
            server
                .post("/v1/projects/p/branches", &body.to_string())
                .expect(201);
            let main_pages = acked
                .iter()
                .filter(|ack| ack.branch == "main")
                .map(|ack| (ack.rel, ack.block, ack.fill))
                .collect();
            created.push(Created {
                name: name.clone(),
                main_pages,
            });
            current = Some(name);
        }
        if let Some(branch) = &current {
            // Branch pages live in their own relation so they never shadow main's.
            let rel = 100 + client;
            let answer = server
                .put_page(&page_path(branch, rel, round), &[!fill; PAGE])
                .expect(200);
            acked.push(Acked {
                branch: branch.clone(),
                rel,
                block: round,
                fill: !fill,
                lsn: answer["lsn"].as_str().unwrap().to_owned(),
            });
        }
    }
    (acked, created)
}

fn verify(server: &Server, acked: &[Acked], created: &[Created]) {
    for ack in acked {
        let path = page_path(&ack.branch, ack.rel, ack.block);
        let latest = server.get(&path);
        assert_eq!(
            (latest.status, latest.body),
            (200, vec![ack.fill; PAGE]),
            "{path}"
        );
        let at = server.get(&format!("{path}?lsn={}", ack.lsn));
        assert_eq!(
            (at.status, at.body),
            (200, vec![ack.fill; PAGE]),
            "{path} at {}",
            ack.lsn
        );
    }
    for branch in created {
        for (rel, block, fill) in &branch.main_pages {
            let read = server.get(&page_path(&branch.name, *rel, *block));
            assert_eq!(
                (read.status, read.body),
                (200, vec![*fill; PAGE]),
                "{} {rel}/{block}",
                branch.name
            );
        }
    }
}

#[test]
fn concurrent_clients_lose_no_acknowledged_commit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    server
        .post(
            "/v1/projects",
            &json!({"project_id": "p", "page_size": PAGE}).to_string(),
        )
        .expect(201);
    let results: Vec<(Vec<Acked>, Vec<Created>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let server = &server;
                scope.spawn(move || client(server, id))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let (acked, created): (Vec<Vec<Acked>>, Vec<Vec<Created>>) = results.into_iter().unzip();
    let (acked, created): (Vec<Acked>, Vec<Created>) = (
        acked.into_iter().flatten().collect(),
        created.into_iter().flatten().collect(),
    );
    assert_eq!(created.len() as u32, CLIENTS * ROUNDS / BRANCH_EVERY);
    // Every commit got its own LSN.
    let mut lsns: Vec<&str> = acked.iter().map(|ack| ack.lsn.as_str()).collect();
    lsns.sort_unstable();
    lsns.dedup();
    assert_eq!(lsns.len(), acked.len());
    verify(&server, &acked, &created);

    assert!(server.terminate().success());
    let server = Server::start(dir.path(), &[]);
    verify(&server, &acked, &created);
}
