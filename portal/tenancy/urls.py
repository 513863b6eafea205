from __future__ import annotations

from django.urls import path

from portal.tenancy.api import endpoints as api
from portal.tenancy.views import api_keys, invitations, members

# The home pages (HomeView, the account and organisation homes) keep their names in this
# namespace but live in web.views.home: portal/urls.py adds them (web.urls.tenancy_pages).
app_name = "tenancy"

urlpatterns = [
    path(
        "invitations/<str:token>/",
        invitations.InvitationAcceptView.as_view(),
        name="invitation_accept",
    ),
    # Accounts
    path(
        "a/<uuid:account_id>/members/", members.AccountMembersView.as_view(), name="account_members"
    ),
    path(
        "a/<uuid:account_id>/members/invite/",
        members.AccountInviteView.as_view(),
        name="account_invite",
    ),
    path(
        "a/<uuid:account_id>/members/<uuid:membership_id>/role/",
        members.AccountMemberRoleView.as_view(),
        name="account_member_role",
    ),
    path(
        "a/<uuid:account_id>/members/<uuid:membership_id>/remove/",
        members.AccountMemberRemoveView.as_view(),
        name="account_member_remove",
    ),
    path(
        "a/<uuid:account_id>/invitations/<uuid:invitation_id>/revoke/",
        members.AccountInvitationRevokeView.as_view(),
        name="account_invitation_revoke",
    ),
    # Organisations
    path(
        "o/<uuid:org_id>/members/",
        members.OrganisationMembersView.as_view(),
        name="organisation_members",
    ),
    path(
        "o/<uuid:org_id>/members/invite/",
        members.OrganisationInviteView.as_view(),
        name="organisation_invite",
    ),
    path(
        "o/<uuid:org_id>/members/<uuid:membership_id>/role/",
        members.OrganisationMemberRoleView.as_view(),
        name="organisation_member_role",
    ),
    path(
        "o/<uuid:org_id>/members/<uuid:membership_id>/remove/",
        members.OrganisationMemberRemoveView.as_view(),
        name="organisation_member_remove",
    ),
    path(
        "o/<uuid:org_id>/invitations/<uuid:invitation_id>/revoke/",
        members.OrganisationInvitationRevokeView.as_view(),
        name="organisation_invitation_revoke",
    ),
    path(
        "o/<uuid:org_id>/api-keys/",
        api_keys.OrganisationApiKeysView.as_view(),
        name="organisation_api_keys",
    ),
    path(
        "o/<uuid:org_id>/api-keys/<uuid:api_key_id>/revoke/",
        api_keys.OrganisationApiKeyRevokeView.as_view(),
        name="organisation_api_key_revoke",
    ),
    # API
    path("api/v1/me/", api.MeApi.as_view(), name="api_me"),
    path(
        "api/v1/accounts/<uuid:account_id>/",
        api.AccountDetailApi.as_view(),
        name="api_account_detail",
    ),
    path(
        "api/v1/accounts/<uuid:account_id>/members/",
        api.AccountMemberListApi.as_view(),
        name="api_account_members",
    ),
    path(
        "api/v1/organisations/<uuid:org_id>/",
        api.OrganisationDetailApi.as_view(),
        name="api_organisation_detail",
    ),
    path(
        "api/v1/organisations/<uuid:org_id>/accounts/",
        api.OrganisationAccountListApi.as_view(),
        name="api_organisation_accounts",
    ),
    path(
        "api/v1/organisations/<uuid:org_id>/members/",
        api.OrganisationMemberListApi.as_view(),
        name="api_organisation_members",
    ),
]
