//! Machine tags (decisions: Rules / Tags).

use palisade_contract::requests::{TagAction, TagRequest};
use palisade_contract::MdeError;

pub const MAX_TAG_CHARS: usize = 200;
pub const MAX_TAGS_PER_MACHINE: usize = 1_000;

/// 1 to 200 characters, no control characters; stored exactly as given.
pub fn validate_tag(tag: &str) -> Result<(), MdeError> {
    let chars = tag.chars().count();
    if chars == 0 || chars > MAX_TAG_CHARS {
        return Err(MdeError::invalid_input(format!(
            "Invalid input Value: a tag has 1 to {MAX_TAG_CHARS} characters, this one has {chars}."
        )));
    }
    if tag.chars().any(char::is_control) {
        return Err(MdeError::invalid_input(
            "Invalid input Value: a tag may not contain control characters.",
        ));
    }
    Ok(())
}

fn check_count(count: usize) -> Result<(), MdeError> {
    if count > MAX_TAGS_PER_MACHINE {
        return Err(MdeError::invalid_input(format!(
            "Invalid input Value: a machine has at most {MAX_TAGS_PER_MACHINE} tags."
        )));
    }
    Ok(())
}

/// Adds or removes one tag, already checked by [`validate_tag`]. Adding a present
/// tag and removing an absent one change nothing.
pub fn apply(tags: &mut Vec<String>, request: &TagRequest) -> Result<(), MdeError> {
    let position = tags.iter().position(|t| *t == request.value);
    match (request.action, position) {
        (TagAction::Add, None) => {
            check_count(tags.len() + 1)?;
            tags.push(request.value.clone());
        }
        (TagAction::Remove, Some(index)) => {
            tags.remove(index);
        }
        (TagAction::Add, Some(_)) | (TagAction::Remove, None) => {}
    }
    Ok(())
}

/// The tag set a `PATCH` replaces all tags with: each tag valid, duplicates dropped.
pub fn replacement(requested: &[String]) -> Result<Vec<String>, MdeError> {
    let mut tags: Vec<String> = Vec::with_capacity(requested.len());
    for tag in requested {
        validate_tag(tag)?;
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    check_count(tags.len())?;
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(value: &str, action: TagAction) -> TagRequest {
        TagRequest {
            value: value.into(),
            action,
        }
    }

    #[test]
    fn add_and_remove_are_idempotent_and_case_sensitive() {
        let mut tags = vec!["Prod".to_string()];
        apply(&mut tags, &req("prod", TagAction::Add)).unwrap();
        apply(&mut tags, &req("prod", TagAction::Add)).unwrap();
        assert_eq!(tags, ["Prod", "prod"]);
        apply(&mut tags, &req("absent", TagAction::Remove)).unwrap();
        apply(&mut tags, &req("Prod", TagAction::Remove)).unwrap();
        assert_eq!(tags, ["prod"]);
    }

    #[test]
    fn limits() {
        assert!(validate_tag("").is_err());
        assert!(validate_tag(&"x".repeat(201)).is_err());
        assert!(validate_tag("a\nb").is_err());
        validate_tag(&"é".repeat(200)).unwrap();
        let mut full: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        assert!(apply(&mut full, &req("one more", TagAction::Add)).is_err());
        assert_eq!(replacement(&["a".into(), "a".into()]).unwrap(), ["a"]);
    }
}
