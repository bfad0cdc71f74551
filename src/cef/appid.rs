//! The app id tag table: `APPID_<NAME>` for the apps the official agent named,
//! `APPID_<number>` for every other app.
//!
//! SIEM rules match on these tags, so the names are part of the output
//! contract. To support another app, add one row to [`WELL_KNOWN_APPS`]
//! (kept sorted by id; a unit test checks it) after confirming the name the
//! official agent used for it.

/// `(app id, tag suffix)`, sorted by app id.
pub const WELL_KNOWN_APPS: &[(u64, &str)] = &[
    (10489, "BOX"),
    (10980, "OKTA"),
    (11114, "SALESFORCE"),
    (11161, "O365"),
    (11599, "AWS"),
    (11627, "DROPBOX"),
    (12260, "AZURE"),
    (14509, "SERVICENOW"),
    (15600, "ONEDRIVE"),
    (20892, "SHAREPOINT"),
    (20893, "OUTLOOK"),
    (28375, "TEAMS"),
];

/// The prefix of every app id tag.
pub const TAG_PREFIX: &[u8] = b"APPID_";

/// The symbolic name of a well-known app, if it has one.
pub fn well_known_name(app_id: u64) -> Option<&'static str> {
    WELL_KNOWN_APPS
        .binary_search_by_key(&app_id, |&(id, _)| id)
        .ok()
        .map(|index| WELL_KNOWN_APPS[index].1)
}

/// Appends the tag for a numeric app id (`APPID_BOX`, `APPID_33626`).
pub fn write_tag(out: &mut Vec<u8>, app_id: u64) {
    out.extend_from_slice(TAG_PREFIX);
    match well_known_name(app_id) {
        Some(name) => out.extend_from_slice(name.as_bytes()),
        None => out.extend_from_slice(itoa::Buffer::new().format(app_id).as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(WELL_KNOWN_APPS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn tags() {
        let mut out = Vec::new();
        write_tag(&mut out, 14509);
        out.push(b',');
        write_tag(&mut out, 33626);
        assert_eq!(out, b"APPID_SERVICENOW,APPID_33626");
        for &(id, name) in WELL_KNOWN_APPS {
            assert_eq!(well_known_name(id), Some(name));
        }
        assert_eq!(well_known_name(0), None);
    }
}
