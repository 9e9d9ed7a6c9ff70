//! The `teams` action: a message to a Microsoft Teams channel through a Workflows webhook
//! ("When a Teams webhook request is received"), which takes one Adaptive Card in the
//! documented message envelope and answers 202. The webhook URL is the credential: it is a
//! secret reference and is called "the secret URL" wherever it would be shown.

use super::template::render;
use super::{StepOutcome, TeamsAction, http::post_json, render_settings};
use serde_json::{Value, json};

/// The card schema version Teams renders everywhere (desktop, web, mobile) today.
const CARD_VERSION: &str = "1.4";

/// A card with one wrapping text block: what `text` becomes.
pub fn text_card(text: &str) -> Value {
    json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": [{ "type": "TextBlock", "text": text, "wrap": true }],
    })
}

/// The Workflows envelope around an Adaptive Card.
pub fn envelope(card: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// The card `card` (a template) renders, or the text card of `text`: checked to be a JSON object.
pub fn card(action: &TeamsAction, context: &Value) -> Result<Value, String> {
    match (&action.card, &action.text) {
        (Some(card), _) => {
            let card: Value =
                serde_json::from_str(&render(card, context)?).map_err(|e| format!("card did not render JSON: {e}"))?;
            if !card.is_object() {
                return Err("card must render a JSON object (an Adaptive Card)".into());
            }
            Ok(card)
        }
        (None, Some(text)) => Ok(text_card(&render(text, context)?)),
        (None, None) => Err("a teams action needs `text` or `card`".into()),
    }
}

pub async fn run(client: &reqwest::Client, action: &TeamsAction, context: &Value) -> StepOutcome {
    let rendered = render_settings(|| {
        let url = action.url.render(context)?;
        let message = envelope(card(action, context)?);
        Ok((url, serde_json::to_vec(&message).expect("JSON values serialise")))
    });
    let (url, body) = match rendered {
        Ok(parts) => parts,
        Err(failed) => return *failed,
    };
    post_json(client, &action.url, &url, body, action.retry, "teams").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_becomes_one_wrapping_text_block_in_the_workflows_envelope() {
        let message = envelope(text_card("orders failed"));
        assert_eq!(message["type"], "message");
        let attachment = &message["attachments"][0];
        assert_eq!(attachment["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(attachment["content"]["type"], "AdaptiveCard");
        assert_eq!(attachment["content"]["body"][0]["text"], "orders failed");
        assert_eq!(attachment["content"]["body"][0]["wrap"], true);
    }
}
