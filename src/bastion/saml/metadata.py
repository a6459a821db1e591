"""IdP metadata for one application (SAML Metadata §2.4.3): entity id, signing certificates,
single sign-on and single logout endpoints, NameID formats."""

from __future__ import annotations

from lxml import etree

from bastion.saml.configuration import HTTP_POST, HTTP_REDIRECT
from bastion.saml.keys import SamlKey
from bastion.saml.requests import DSIG, SAMLP

__all__ = ["idp_metadata", "NAMEID_FORMATS"]

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NAMEID_FORMATS = (  # unspecified first: some service providers ask for the first one listed
    "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
    "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
)


def idp_metadata(*, entity_id: str, sso_url: str, slo_url: str, keys: list[SamlKey], want_signed_requests: bool) -> bytes:
    """Every published certificate is listed, the current one first, so a service provider
    that reads metadata trusts the next key before a rotation makes it the only one."""
    root = etree.Element(f"{{{MD}}}EntityDescriptor", {"entityID": entity_id}, nsmap={"md": MD, "ds": DSIG})
    descriptor = etree.SubElement(
        root, f"{{{MD}}}IDPSSODescriptor",
        {"protocolSupportEnumeration": SAMLP, "WantAuthnRequestsSigned": "true" if want_signed_requests else "false"},
    )
    for key in keys:
        key_descriptor = etree.SubElement(descriptor, f"{{{MD}}}KeyDescriptor", {"use": "signing"})
        x509_data = etree.SubElement(etree.SubElement(key_descriptor, f"{{{DSIG}}}KeyInfo"), f"{{{DSIG}}}X509Data")
        etree.SubElement(x509_data, f"{{{DSIG}}}X509Certificate").text = key.certificate_base64
    for binding in (HTTP_REDIRECT, HTTP_POST):
        etree.SubElement(descriptor, f"{{{MD}}}SingleLogoutService", {"Binding": binding, "Location": slo_url})
    for name_format in NAMEID_FORMATS:
        etree.SubElement(descriptor, f"{{{MD}}}NameIDFormat").text = name_format
    for binding in (HTTP_REDIRECT, HTTP_POST):
        etree.SubElement(descriptor, f"{{{MD}}}SingleSignOnService", {"Binding": binding, "Location": sso_url})
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
