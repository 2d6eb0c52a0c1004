//! ACL users and databases on standalone targets.

mod support;

use support::*;

#[test]
fn an_acl_user_fills_its_key_pattern_and_db_selects_the_database() {
    let server = RedisServer::start(&[]);
    let mut admin = server.connect();
    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "filler",
            "on",
            ">filler-secret-77",
            "~acl:*",
            "+set",
            "+mset",
            "+select",
            "+info",
            "+ping",
        ])
        .query::<()>(&mut admin)
        .unwrap();
    let scratch = Scratch::new();
    let plan = scratch.plan(
        "plan.toml",
        &format!(
            "seed = 1\n[targets.main]\nmode = \"standalone\"\nnodes = [\"{}\"]\nusername = \"filler\"\npassword_env = \"FILLER_PW\"\ndb = 3\n[[stages]]\nname = \"s\"\nkeys = 5000\nkey_prefix = \"acl:\"\n",
            server.addr()
        ),
    );
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&plan)
        .args(["-q", "-o", "result.json"])
        .env("FILLER_PW", "filler-secret-77")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    redis::cmd("SELECT").arg(3).query::<()>(&mut admin).unwrap();
    let in_db3: u64 = redis::cmd("DBSIZE").query(&mut admin).unwrap();
    assert_eq!(in_db3, 5000);
    redis::cmd("SELECT").arg(0).query::<()>(&mut admin).unwrap();
    let in_db0: u64 = redis::cmd("DBSIZE").query(&mut admin).unwrap();
    assert_eq!(in_db0, 0);
    let result = std::fs::read_to_string(scratch.path("result.json")).unwrap();
    assert!(!result.contains("filler-secret-77"));
}

#[test]
fn an_acl_user_writing_outside_its_pattern_fails_with_the_refusal() {
    let server = RedisServer::start(&[]);
    let mut admin = server.connect();
    redis::cmd("ACL")
        .arg(&[
            "SETUSER", "filler", "on", ">pw-1234", "~acl:*", "+set", "+mset", "+info", "+ping",
        ])
        .query::<()>(&mut admin)
        .unwrap();
    let scratch = Scratch::new();
    let plan = scratch.plan(
        "plan.toml",
        &format!(
            "seed = 1\n[targets.main]\nmode = \"standalone\"\nnodes = [\"{}\"]\nusername = \"filler\"\npassword_env = \"FILLER_PW\"\n[[stages]]\nname = \"s\"\nkeys = 100\nkey_prefix = \"other:\"\n",
            server.addr()
        ),
    );
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&plan)
        .args(["-q", "-o", "result.json"])
        .env("FILLER_PW", "pw-1234")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("NOPERM") && err.contains("other:"), "{err}");
    assert_eq!(server.dbsize(), 0);
}
