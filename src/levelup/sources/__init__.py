"""CRM sources (docs/integrations.md): deliveries from HubSpot, Pipedrive, Salesforce, Zoho or any
signed webhook, checked with the vendor's scheme and mapped to events by the document's ``sources:``."""
