//! The template syntax: literal text with slots in braces.
//!
//! Slots: `{node}` (the node's ID token), `{title}` (its title segment, when its side has texts),
//! `{neighbors}` (the 1-hop neighbour list), `{neighbors2}` (the 2-hop list). `{{` and `}}` write
//! literal braces. Each slot appears at most once; a prompt or neighbour template must show its
//! node by `{node}`, `{title}` or both (text-only prompts leave out `{node}`). Which slots a template may or must hold depends on its role (see
//! [`Templates::validate`]); anything else is an error naming the template, the slot and its place.

use super::PromptError;

/// A named place in a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Node,
    Title,
    Neighbors,
    Neighbors2,
}

impl Slot {
    fn name(self) -> &'static str {
        match self {
            Slot::Node => "{node}",
            Slot::Title => "{title}",
            Slot::Neighbors => "{neighbors}",
            Slot::Neighbors2 => "{neighbors2}",
        }
    }

    fn from_name(name: &str) -> Option<Slot> {
        match name {
            "node" => Some(Slot::Node),
            "title" => Some(Slot::Title),
            "neighbors" => Some(Slot::Neighbors),
            "neighbors2" => Some(Slot::Neighbors2),
            _ => None,
        }
    }
}

/// A parsed template: literal text and slots, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Text(String),
    Slot(Slot),
}

/// Which slots a template must hold exactly once, and which it may hold at most once.
pub(crate) struct SlotRules<'a> {
    pub required: &'a [Slot],
    pub optional: &'a [Slot],
}

fn allowed_list(rules: &SlotRules<'_>) -> String {
    let names: Vec<&str> = rules
        .required
        .iter()
        .chain(rules.optional)
        .map(|s| s.name())
        .collect();
    names.join(", ")
}

/// Parse `template` (called `name` in errors) and check its slots against `rules`.
pub(crate) fn parse(
    name: &str,
    template: &str,
    rules: &SlotRules<'_>,
) -> Result<Vec<Part>, PromptError> {
    let what = format!("template {name} ({template:?})");
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                chars.next();
                text.push('}');
            }
            '}' => {
                return Err(PromptError::invalid(
                    &what,
                    format!("unmatched '}}' at byte {at} (write '}}}}' for a literal brace)"),
                ))
            }
            '{' => {
                let rest = &template[at + 1..];
                let Some(end) = rest.find('}') else {
                    return Err(PromptError::invalid(
                        &what,
                        format!("unclosed '{{' at byte {at} (write '{{{{' for a literal brace)"),
                    ));
                };
                let slot_name = &rest[..end];
                let slot = Slot::from_name(slot_name)
                    .filter(|s| rules.required.contains(s) || rules.optional.contains(s))
                    .ok_or_else(|| {
                        let known = if Slot::from_name(slot_name).is_some() {
                            "a slot not allowed here"
                        } else {
                            "an unknown slot"
                        };
                        PromptError::invalid(
                            &what,
                            format!(
                                "{{{slot_name}}} at byte {at} is {known}; allowed slots: {}",
                                allowed_list(rules)
                            ),
                        )
                    })?;
                if parts.contains(&Part::Slot(slot)) {
                    return Err(PromptError::invalid(
                        &what,
                        format!("slot {} appears more than once", slot.name()),
                    ));
                }
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Slot(slot));
                // Skip the slot name and its closing brace.
                for _ in 0..slot_name.chars().count() + 1 {
                    chars.next();
                }
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    for slot in rules.required {
        if !parts.contains(&Part::Slot(*slot)) {
            return Err(PromptError::invalid(
                &what,
                format!("the required slot {} is missing", slot.name()),
            ));
        }
    }
    Ok(parts)
}

/// The texts of all prompt templates (before tokenisation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Templates {
    /// User prompts at hop 0, 1, 2.
    pub user: [String; 3],
    /// Item prompts at hop 0, 1, 2.
    pub item: [String; 3],
    /// One neighbour in a `{neighbors}` / `{neighbors2}` list: `{node}` and optionally `{title}`.
    pub neighbor: String,
    /// Text between two neighbours of a list.
    pub separator: String,
    /// Fixed text closing every prompt; never truncated (its last token is the pooling position).
    pub closing: String,
}

impl Default for Templates {
    fn default() -> Self {
        Templates {
            user: [
                "{node}{title}".into(),
                "{node}{title} has interacted with {neighbors}".into(),
                "{node}{title} has interacted with {neighbors}; users with the same items: {neighbors2}"
                    .into(),
            ],
            item: [
                "{node}{title}".into(),
                "{node}{title} was chosen by {neighbors}".into(),
                "{node}{title} was chosen by {neighbors}; items chosen by the same users: {neighbors2}"
                    .into(),
            ],
            neighbor: "{node}{title}".into(),
            separator: ", ".into(),
            closing: ". In one word:".into(),
        }
    }
}

/// The parsed templates, ready to tokenise.
pub(crate) struct ParsedTemplates {
    pub user: [Vec<Part>; 3],
    pub item: [Vec<Part>; 3],
    pub neighbor: Vec<Part>,
}

const HOP_RULES: [SlotRules<'static>; 3] = [
    SlotRules {
        required: &[],
        optional: &[Slot::Node, Slot::Title],
    },
    SlotRules {
        required: &[Slot::Neighbors],
        optional: &[Slot::Node, Slot::Title],
    },
    SlotRules {
        required: &[Slot::Neighbors, Slot::Neighbors2],
        optional: &[Slot::Node, Slot::Title],
    },
];

const NEIGHBOR_RULES: SlotRules<'static> = SlotRules {
    required: &[],
    optional: &[Slot::Node, Slot::Title],
};

/// Parse a template that must show its node: by `{node}`, `{title}` or both.
fn parse_node_template(
    name: &str,
    template: &str,
    rules: &SlotRules<'_>,
) -> Result<Vec<Part>, PromptError> {
    let parts = parse(name, template, rules)?;
    if !parts.contains(&Part::Slot(Slot::Node)) && !parts.contains(&Part::Slot(Slot::Title)) {
        return Err(PromptError::invalid(
            &format!("template {name} ({template:?})"),
            "holds neither {node} nor {title}: the node itself would be missing",
        ));
    }
    Ok(parts)
}

impl Templates {
    /// Parse every template; the first invalid one is reported by name.
    pub(crate) fn parse(&self) -> Result<ParsedTemplates, PromptError> {
        let parse_hops = |side: &str, texts: &[String; 3]| -> Result<[Vec<Part>; 3], PromptError> {
            Ok([
                parse_node_template(&format!("{side}_hop0"), &texts[0], &HOP_RULES[0])?,
                parse_node_template(&format!("{side}_hop1"), &texts[1], &HOP_RULES[1])?,
                parse_node_template(&format!("{side}_hop2"), &texts[2], &HOP_RULES[2])?,
            ])
        };
        let no_slots = SlotRules {
            required: &[],
            optional: &[],
        };
        let literal = |name: &str, text: &str| -> Result<(), PromptError> {
            parse(name, text, &no_slots).map(|_| ())
        };
        literal("separator", &self.separator)?;
        literal("closing", &self.closing)?;
        Ok(ParsedTemplates {
            user: parse_hops("user", &self.user)?,
            item: parse_hops("item", &self.item)?,
            neighbor: parse_node_template("neighbor", &self.neighbor, &NEIGHBOR_RULES)?,
        })
    }

    /// Check every template, so a bad one is reported when templates are set, not at first use.
    pub fn validate(&self) -> Result<(), PromptError> {
        self.parse().map(|_| ())
    }
}

/// Parse a title format (exactly one `{title}`) into the text before and after the title.
pub(crate) fn parse_title_format(format: &str) -> Result<(String, String), PromptError> {
    let parts = parse(
        "title_format",
        format,
        &SlotRules {
            required: &[Slot::Title],
            optional: &[],
        },
    )?;
    let mut before = String::new();
    let mut after = String::new();
    let mut seen = false;
    for part in parts {
        match part {
            Part::Slot(_) => seen = true,
            Part::Text(t) if seen => after = t,
            Part::Text(t) => before = t,
        }
    }
    Ok((before, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_slots_text_and_escapes() {
        let rules = &HOP_RULES[1];
        let parts = parse("t", "{{x}} {node} has {neighbors}!", rules).unwrap();
        assert_eq!(
            parts,
            vec![
                Part::Text("{x} ".into()),
                Part::Slot(Slot::Node),
                Part::Text(" has ".into()),
                Part::Slot(Slot::Neighbors),
                Part::Text("!".into()),
            ]
        );
        assert_eq!(
            parse_title_format(" \"{title}\"").unwrap(),
            (" \"".to_string(), "\"".to_string())
        );
    }

    #[test]
    fn defaults_are_valid() {
        Templates::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_problem() {
        let rules = &HOP_RULES[1];
        let err = |t: &str| {
            parse_node_template("user_hop1", t, rules)
                .err()
                .unwrap()
                .message
        };
        assert!(err("{node} {nieghbors}").contains("{nieghbors} at byte 7 is an unknown slot"));
        assert!(err("{node} {neighbors2}").contains("not allowed here"));
        assert!(err("{node} {neighbors} {node}").contains("more than once"));
        assert!(err("{node}").contains("required slot {neighbors} is missing"));
        assert!(err("{neighbors}").contains("neither {node} nor {title}"));
        assert!(err("{node} {neighbors").contains("unclosed"));
        assert!(err("{node} } {neighbors}").contains("unmatched"));
        assert!(err("{node}").contains("user_hop1"));
        // A text-only prompt (no ID token) is allowed.
        let mut t = Templates::default();
        t.item[1] = "{title} was chosen by {neighbors}".into();
        t.neighbor = "{title}".into();
        t.validate().unwrap();
        t = Templates::default();
        t.item[2] = "{node} {neighbors}".into();
        assert!(t.validate().unwrap_err().message.contains("item_hop2"));
        t = Templates::default();
        t.closing = "{node}".into();
        assert!(t.validate().unwrap_err().message.contains("closing"));
        assert!(parse_title_format("x").is_err());
    }
}
