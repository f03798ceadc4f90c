//! SMS: the page squeezed into plain GSM-7 text that always ends with the runbook link
//! (`text`), sent through Twilio's Messages API with delivery receipts polled
//! (`twilio`), and the replies to it read from Twilio's message list (`inbox`).
//! Declares and re-exports; the paths `notify::sms::*` are the interface.

mod inbox;
mod text;
mod twilio;

pub use inbox::{InboundSms, ListError, SmsInbox};
pub use text::{SMS_MAX_SEPTETS, gsm7_septets, sms_text, sms_text_with, to_gsm7};
pub use twilio::{
    DEFAULT_BASE_URL, DeliveryStatus, PollError, SmsChannel, SmsSettings, confirmation,
};
