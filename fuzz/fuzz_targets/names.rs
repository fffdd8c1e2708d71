//! Fuzzes the checks on user-chosen names and session ids (`model::validate_file_name`,
//! `model::parse_session_id`).
//!
//! Properties: never a panic; an accepted name keeps to the spec (1–128 characters, at most
//! 200 bytes, letters, digits, space and `_ - . ( )`, not starting with `.` or space) and
//! its stored object name is one plain path component inside the storage folder; an
//! accepted session id is a UUID that reads back from its canonical form.
#![no_main]

use std::path::{Component, Path};

use file_service::model::{parse_session_id, validate_file_name};
use file_service::storage::object_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(name) = validate_file_name(&text) {
        assert_eq!(name, &*text);
        let chars = name.chars().count();
        assert!((1..=128).contains(&chars) && name.len() <= 200, "{name:?}");
        assert!(!name.starts_with('.') && !name.starts_with(' '), "{name:?}");
        assert!(
            name.chars().all(|c| c.is_alphanumeric() || " _-.()".contains(c)),
            "{name:?}"
        );
        let object = object_name(i64::MAX, name, "csv");
        let components: Vec<Component> = Path::new(&object).components().collect();
        assert!(
            matches!(components.as_slice(), [Component::Normal(_)]),
            "object {object:?} is not one plain file name"
        );
        assert!(object.len() <= 255, "object name {} bytes", object.len());
    }
    if let Ok(session) = parse_session_id(&text) {
        assert_eq!(parse_session_id(&session.to_string()).ok(), Some(session));
        assert_eq!(parse_session_id(&session.hyphenated().to_string()).ok(), Some(session));
    }
});
