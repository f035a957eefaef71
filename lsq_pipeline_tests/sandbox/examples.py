"""The example requests and responses of the five reference pages, copied verbatim (../shared/leadsquared-api/)."""
# Each constant is the exact text of a JSON block of the page named above it; tests send the
# request texts as they are and compare answers with the response texts' shape.

# add-opportunities-in-bulk.txt
BULK_ADD_REQUEST = r'''[
   {
      "SearchByValue":"+91-2543456794",
      "OpportunityEventCode":12114,
      "OpportunityNote":"Add/ByEmailAddress",
      "UpdateEmptyFields":true,
      "DoNotChangeOwner":true,
      "Fields":[
         {
            "SchemaName":"mx_Custom_1",
            "Value":"XYZ"
         },
         {
            "SchemaName":"mx_Custom_2",
            "Value":"ABC"
         },
         {
            "SchemaName":"mx_Custom_19",
            "Value":"One"
         },
         {
            "SchemaName":"Status",
            "Value":"Open"
         }
      ]
   },
   {
      "SearchByValue":"+91-2543456791",
      "OpportunityEventCode":12114,
      "OpportunityNote":"Add/ByEmailAddress",
      "UpdateEmptyFields":true,
      "DoNotChangeOwner":true,
      "Fields":[
         {
            "SchemaName":"mx_Custom_1",
            "Value":"ABC"
         },
         {
            "SchemaName":"mx_Custom_2",
            "Value":"XYZ"
         },
         {
            "SchemaName":"mx_Custom_19",
            "Value":"One"
         },
         {
            "SchemaName":"Status",
            "Value":"Open"
         }
      ]
   }
]'''
BULK_ADD_RESPONSE = r'''{
   "Response":[
      {
         "ProspectOpportunityId":"001ea287-b311-4b05-8d7f-2f398379801f",
         "RowNumber":1,
         "OpportunityCreated":true
      },
      {
         "ProspectOpportunityId":"189eddf1-3bc6-4580-96b8-dc57e49eab12",
         "RowNumber":2,
         "OpportunityCreated":true
      }
   ]
}'''

# bulk-update-opportunities.txt
BULK_UPDATE_CREATED_ON_FIELD = r'''{
"SchemaName": "CreatedOn",
"Value": "2024-04-02 12:13:44"
}'''
BULK_UPDATE_REQUEST = r'''[
   {
      "ProspectOpportunityId":"4f530c63-4c93-4150-8b8e-83487befb3b2",
      "OpportunityEventCode":12003,
      "Fields":[
         {
            "SchemaName":"Status",
            "Value":"Won"
         },
         {
            "SchemaName":"Owner",
            "Value":"96105aa0-61f2-11ea-8109-022edb41208c"
         }
      ]
   },
   {
      "ProspectOpportunityId":"c5a7f37c-b789-44c9-929b-74aa6250b539",
      "OpportunityEventCode":12000,
      "Fields":[
         {
            "SchemaName":"mx_Custom_6",
            "Value":"23500"
         }
      ]
   }
]'''
BULK_UPDATE_RESPONSE = r'''{
   "Response":[
      {
         "RowNumber":1,
         "OpportunityUpdated":true
      },
      {
         "RowNumber":2,
         "OpportunityUpdated":true
      }
   ]
}'''

# capture-opportunities.txt
CAPTURE_STATUS_COMMENT_FIELDS = r'''[
{
"SchemaName": "Status",
"Value": "Lost"
},
{
"SchemaName": "mx_Custom_19",
"Value": "Not interested in product"
}
]'''
CAPTURE_REQUEST = r'''{ "LeadDetails":[ { "Attribute":"EmailAddress", "Value":"johndoe4633@example.com" }, { "Attribute":"ProspectID", "Value":"4d03f397-49e7-4e4e-8168-5f51d591c592" }, { "Attribute":"SearchBy", "Value":"ProspectId" }, { "Attribute":"__UseUserDefinedGuid__", "Value":"true" } ], "Opportunity":{ "OpportunityEventCode":12000, "OpportunityNote": "Opportunity capture api overwrite", "UpdateEmptyFields":true, "DoNotPostDuplicateActivity":true, "DoNotChangeOwner":true, "Fields":[ { "SchemaName":"mx_Custom_1", "Value":"Opportunity-Test" }, { "SchemaName":"mx_Custom_2", "Value":"Prospecting" }, { "SchemaName":"mx_Custom_5", "Value":"Prospecting" }, { "SchemaName":"Status", "Value":"Open" } ] } }'''
CAPTURE_RESPONSE = r'''{ "AdditionalDetails":[ { "ActivityId":"b7dba235-9217-4705-bcd8-741dcdf32071", "PostDeDupActionPerformed":1 } ], "ConflictedOpportunityId":null, "CreatedOpportunityId":"d5976a98-6731-4b21-908b-90b0d9938b45", "ExceptionMessage":null, "ExceptionType":null, "IsUnique":true, "PrimaryAction":1, "RelatedProspectId":"489c644c-931e-4ed0-bf72-926a2945e72f", "RequestId":"c369ca5a-4474-445e-83fe-0d13a07142ec", "SecondaryAction":2, "Status":0 }'''

# get-opportunities-in-bulk-by-ids.txt
GET_BY_IDS_REQUEST = r'''{
   "SearchParameters":[
      {
         "EventCode":"12003",
         "ProspectActivityId":[
            "24cf277e-70fe-4b2f-a9c2-9a68f45feaba",
            "67db1ccf-ea8b-41b8-9bc2-4cdbe2391a0d"
         ],
         "Columns":{
            "Include_CSV":"CreatedOn,ModifiedOn,Owner"
         }
      },
      {
         "EventCode":"12001",
         "ProspectActivityId":[
            "2232837f-0f5e-4607-8e50-2728d90b9b5c"
         ],
         "Columns":{
            "Include_CSV":"CreatedOn,ModifiedOn,Owner"
         }
      }
   ]
}'''
GET_BY_IDS_RESPONSE = r'''[
    {
        "EventCode": "12003",
        "RecordCount": 3,
        "Opportunities": [
            {
                "ProspectId": "a368678f-1e81-4fb8-af0a-4b896f6330e1",
                "EmailAddress": "janehewitt@example.com",
                "ProspectActivityId": "24cf277e-70fe-4b2f-a9c2-9a68f45feaba",
                "CreatedOn": "4/6/2023 3:23:34 PM",
                "ModifiedOn": "4/6/2023 3:23:34 PM",
                "Owner": "d5d08e32-5ca9-11ea-8dd7-029e1407a868",
                "OwnerEmailAddress": "sri.sudhan@mcn.christuniversity.in"
            },
            {
                "ProspectId": "332c7a9f-6451-11ea-8109-022edb41208c",
                "EmailAddress": "george.costanza@example.com",
                "ProspectActivityId": "67db1ccf-ea8b-41b8-9bc2-4cdbe2391a0d",
                "CreatedOn": "11/24/2021 1:17:20 PM",
                "ModifiedOn": "5/4/2022 7:26:35 PM",
                "Owner": "d5d08e32-5ca9-11ea-8dd7-029e1407a868",
                "OwnerEmailAddress": "sri.sudhan@mcn.christuniversity.in"
            },
            {
                "ProspectId": "9a13bba8-c85c-4b22-acb7-a347dba60268",
                "EmailAddress": "jerry.seinfeld@example.com",
                "ProspectActivityId": "2232837f-0f5e-4607-8e50-2728d90b9b5c",
                "CreatedOn": "3/11/2021 2:37:51 PM",
                "ModifiedOn": "5/14/2021 4:44:46 PM",
                "Owner": "d5d08e32-5ca9-11ea-8dd7-029e1407a868",
                "OwnerEmailAddress": "sri.sudhan@mcn.christuniversity.in"
            }
        ]
    },
    {
        "EventCode": "12001",
        "RecordCount": 0,
        "Opportunities": []
    }
]'''

# post-bulk-activities-on-opportunities.txt
ACTIVITIES_REQUEST = r'''[
   {
      "ActivityEvent":208,
      "ActivityNote":"PAN collected",
      "ActivityOwnerEmail":"sri.sudhan@example.com",
      "Fields":[
         {
            "SchemaName":"mx_Custom_2",
            "Value":"AAAAA1111A"
         }
      ]
   },
   {
      "ActivityEvent":102,
      "ActivityNote":"Meeting completed",
      "ActivityOwnerEmail":"sri.sudhan@example.com"
   }
]'''
ACTIVITIES_RESPONSE = r'''{
   "Response":[
      {
         "ProspectActivityId":"c965269e-754c-4c4f-9b75-714ae56aa4af",
         "RowNumber":1,
         "ActivityCreated":true
      },
      {
         "ProspectActivityId":"dbeeedbc-4fbd-4547-a7bf-04a940dd82e6",
         "RowNumber":2,
         "ActivityCreated":true
      }
   ]
}'''
