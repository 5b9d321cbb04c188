<?php
// Vigil's SP of the test tenant, as GET /v1/sso/saml/{tenant}/metadata
// describes it.
$metadata[getenv('VIGIL_SP_ENTITY')] = [
    'AssertionConsumerService' => [[
        'Binding' => 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
        'Location' => getenv('VIGIL_SP_ACS'),
    ]],
    'NameIDFormat' => 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress',
    'saml20.sign.assertion' => true,
    'saml20.sign.response' => false,
    'signature.algorithm' => 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
];
